"""Consistency-lens quality in a fixed CPU budget, on the Shakespeare model.

1. The subject: a text run given with --subject, or `interfere train exp=shakespeare` trained here for
   --subject-steps steps (short: the lens needs a model that has learnt something, not the best one).
2. `interfere lens dump`: the residual after block --layer at random positions >= 8 of 64-token windows,
   --n-train training and --n-val held-out activations (held-out plays).
3. `interfere lens train` (the project's training loop) for --minutes of training time: a short calibration
   times a step, the cosine schedule and the temperature / fluency ramps are sized to the steps that fit.
4. `interfere lens eval` on every held-out activation: KL and FVE of the lens and of each baseline.

The bar (issue 13): the lens's KL at most half the mean-activation baseline's and below the
shuffled-explanation baseline's, FVE >= 0.3, the commonest explanation token's frequency < 0.2.

    python benchmarks/lens_quality.py                  # 30 minutes of lens training (make bench-lens)
    python benchmarks/lens_quality.py --minutes 2      # a quick look

The table is also written to benchmarks/results/lens_quality.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
CALIBRATION_STEPS = 8


def train_subject(runs_dir: Path, steps: int) -> str:
    from interfere.config import compose
    from interfere.train import train

    run = train(compose(["exp=shakespeare", f"runs_dir={runs_dir}", "name=lens_subject", f"train.steps={steps}",
                         "train.tokens=null", "train.progress=false", "train.artifacts_every=0", "train.eval_every=0",
                         "train.ckpt_every=0", "device=cpu"]))
    return str(run)


def lens_overrides(data: Path, runs_dir: Path, extra: list[str]) -> list[str]:
    return ["+lens=default", f"task.data={data}", f"runs_dir={runs_dir}", "train.progress=false", "device=cpu",
            "train.ckpt_every=0", *extra]


def plan_steps(data: Path, runs_dir: Path, minutes: float, extra: list[str]) -> tuple[int, float]:
    """(steps that fit in the budget, seconds per step) from a short calibration run."""
    from interfere.config import compose
    from interfere.train import train

    calib = train(compose([*lens_overrides(data, runs_dir, extra), "name=lens_calibration",
                           f"train.steps={3 + CALIBRATION_STEPS}", "train.log_every=1", "task.eval.samples=8"]))
    s_per_step = json.loads((Path(calib) / "calibration.json").read_text())["s_per_step"]
    return max(60, int(minutes * 60 / s_per_step * 0.97)), s_per_step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="lens training-time budget")
    parser.add_argument("--subject", default=None, help="a text run to explain (default: train exp=shakespeare here)")
    parser.add_argument("--subject-steps", type=int, default=300)
    parser.add_argument("--layer", type=int, default=2)
    parser.add_argument("--n-train", type=int, default=16384)
    parser.add_argument("--n-val", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--out", type=Path, default=RESULTS / "lens_quality.json")
    parser.add_argument("overrides", nargs="*", help="extra lens config overrides (task.length=..., train.lr=...)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import interfere.lens  # noqa: F401
    from interfere.config import compose
    from interfere.lens.dump import dump
    from interfere.lens.evaluate import BASELINES, evaluate_lens
    from interfere.lens.runs import fresh_lens, load_lens
    from interfere.lens.subject import load_subject, subject_spec
    from interfere.train import train

    runs_dir = RESULTS / "runs"
    t0 = time.perf_counter()
    subject_run = args.subject or train_subject(runs_dir, args.subject_steps)
    subject = load_subject(subject_spec(run=subject_run, runs_dir=runs_dir))
    data = RESULTS / "lens_data" / f"{subject.spec['run']}_L{args.layer}"
    dump(subject, data, args.layer, args.n_train, args.n_val, ctx=64, min_pos=8, seed=0)
    print(f"subject {subject.spec['run']}, dump {data} ({time.perf_counter() - t0:.0f} s so far)", flush=True)

    steps, s_per_step = plan_steps(data, runs_dir, args.minutes, args.overrides)
    ramps = [f"task.temperature.steps={int(steps * 0.8)}", f"task.loss.fluency.steps={int(steps * 0.5)}"]
    print(f"calibration: {s_per_step:.3f} s/step -> {steps} steps in {args.minutes:g} min", flush=True)
    cfg = compose([*lens_overrides(data, runs_dir, [*ramps, *args.overrides]), "name=lens_bench",
                   f"train.steps={steps}", f"train.max_minutes={args.minutes}"])
    run_dir = Path(train(cfg))
    state = json.loads(sorted((run_dir / "checkpoints").glob("step_*/state.json"))[-1].read_text())

    task, lens, _ = load_lens(str(run_dir), runs_dir=runs_dir, device="cpu")
    result = evaluate_lens(task, lens, n_samples=0, untrained=fresh_lens(task, int(cfg.seed)), verbose=4)
    m = result.metrics
    names = ["lens", *(b for b in BASELINES if f"{b}_kl" in m)]
    print(f"\nconsistency lens on {subject.spec['run']} layer {args.layer}, {task.length}-token explanations, "
          f"{state['step']} steps in {state['train_seconds'] / 60:.1f} min on {args.threads} threads; "
          f"{m['n']} held-out activations\n")
    print("| reconstruction | KL (nats) | KL / mean's | FVE |")
    print("| --- | ---: | ---: | ---: |")
    for n in names:
        print(f"| {n} | {m[f'{n}_kl']:.4f} | {m[f'{n}_kl'] / m['mean_kl']:.3f} | {m[f'{n}_fve']:.3f} |")
    print(f"\ncommonest explanation token's frequency {m['top_token_freq']:.3f}; distinct explanations "
          f"{m['distinct_share']:.3f}")
    bar = {"kl_at_most_half_the_mean": m["lens_kl"] <= 0.5 * m["mean_kl"],
           "kl_below_shuffled": m["lens_kl"] < m["shuffled_kl"], "fve_at_least_0.3": m["lens_fve"] >= 0.3,
           "top_token_below_0.2": m["top_token_freq"] < 0.2}
    print("bar: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in bar.items()))
    for s in result.samples:
        print(f"\n  input       ...{s['text']!r}\n  explanation {''.join(s['explanation'])!r}\n"
              f"  original    {s['top_original']}\n  lens        {s['top_reconstructed']}  (KL {s['kl']:.3f})")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "lens quality", "budget_minutes": args.minutes, "threads": args.threads,
        "torch": torch.__version__, "machine": platform.machine(), "subject": subject.spec, "layer": args.layer,
        "steps": state["step"], "train_seconds": state["train_seconds"], "overrides": args.overrides,
        "metrics": m, "bar": bar, "meets_bar": all(bar.values()), "samples": result.samples,
        "run": str(run_dir)}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
