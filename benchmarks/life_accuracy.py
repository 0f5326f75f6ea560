"""How good does a Game of Life model get in a fixed CPU budget? (issue: life16 on 16x16 boards)

Trains `exp=life16` for --minutes of training time and evaluates the final checkpoint on --samples
held-out boards (a fixed seed, disjoint from training) against the targets: cell accuracy >= 99.9% and
board accuracy >= 99%. The time to reach them is the first checkpoint whose --screen held-out boards
meet both (screening every checkpoint on 10,000 boards would cost more CPU than the training).
Evaluation happens after training and is not counted in the budget.

The cosine schedule is sized to the budget: a short calibration run measures seconds per step on this
machine, and the real run gets as many steps as fit (train.max_minutes stops it if the machine slows down).

    python benchmarks/life_accuracy.py                       # Conway (B3/S23), 30 minutes
    python benchmarks/life_accuracy.py --rules random        # rules drawn from all 2^18, same budget
    python benchmarks/life_accuracy.py --minutes 2 --samples 500   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CELL_TARGET, BOARD_TARGET = 0.999, 0.99


def interfere(*words: str, threads: int) -> Path:
    """Run `interfere train ...` and return its run directory."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-m", "interfere", "train", *words, "--json"], env=env,
                         check=True, stdout=subprocess.PIPE, text=True)
    return Path(json.loads(out.stdout)["run_dir"])


def rules_tag(rules: str) -> str:
    return "conway" if rules == "B3/S23" else rules.replace("/", "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="training-time budget")
    parser.add_argument("--rules", default="B3/S23", help='a rule such as B3/S23, or "random"')
    parser.add_argument("--samples", type=int, default=10_000, help="held-out boards per evaluation")
    parser.add_argument("--screen", type=int, default=500, help="held-out boards for screening checkpoints")
    parser.add_argument("--checkpoints", type=int, default=15, help="checkpoints saved along the run")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads for training")
    parser.add_argument("--run", type=Path, help="evaluate this finished run instead of training one")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    runs_dir = RESULTS / "runs"
    tag = rules_tag(args.rules)
    common = ["exp=life16", f"task.rules={args.rules}", f"runs_dir={runs_dir}", "train.progress=false",
              "train.artifacts_every=0", "train.eval_every=0", "task.eval.samples=256", "task.eval.rollout_steps=1"]
    if args.rules != "B3/S23":
        common.append("model.n_cond=18")  # FiLM on the rule bits: each block knows the rule

    if args.run:
        return report(args, args.run, wall=None)  # the wall time of that run is not known here
    calib = interfere(*common, f"name=life16_{tag}_calibration", "train.steps=12", "train.ckpt_every=0",
                      threads=args.threads)  # a throwaway run: only its calibration.json is read
    s_per_step = json.loads((calib / "calibration.json").read_text())["s_per_step"]
    steps = max(20, int(args.minutes * 60 / s_per_step * 0.97))
    every = max(1, steps // args.checkpoints)
    print(f"calibration: {s_per_step:.2f} s/step -> {steps} steps in {args.minutes:g} min, checkpoint every {every}",
          flush=True)

    t0 = time.time()
    run = interfere(*common, f"name=life16_{tag}", f"train.steps={steps}", f"train.ckpt_every={every}",
                    threads=args.threads)
    return report(args, run, wall=time.time() - t0)


def report(args, run: Path, wall: float | None) -> int:
    from interfere import load
    from interfere.train.checkpoint import step_dirs

    elapsed = {}  # step -> training seconds, from the log
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "s_per_step" in record and "loss" in record:
            elapsed[record["step"]] = record["elapsed"]
    def minutes_at(ckpt: Path) -> float:
        step = int(ckpt.name.split("_")[1])
        later = [e for s, e in elapsed.items() if s >= step]  # the next logged step: an upper bound
        return (min(later) if later else max(elapsed.values(), default=float("nan"))) / 60

    def evaluate(ckpt: Path, n: int) -> dict:
        model, task = load(ckpt)
        step = int(ckpt.name.split("_")[1])
        metrics = task.evaluate(model, n_samples=n, seed=task.eval_cfg["seed"], rollout_steps=1)
        row = {"step": step, "train_minutes": minutes_at(ckpt), "samples": n, "cell_accuracy": metrics["cell_accuracy"],
               "board_accuracy": metrics["board_accuracy"]}
        print(f"step {step:5d}  {row['train_minutes']:5.1f} min  {n:6d} boards  cells {row['cell_accuracy']:.5f}  "
              f"boards {row['board_accuracy']:.4f}", flush=True)
        rows.append(row)
        return row

    def at_target(row: dict) -> bool:
        return row["cell_accuracy"] >= CELL_TARGET and row["board_accuracy"] >= BOARD_TARGET

    rows, first = [], None
    # a slowed-down machine can overrun the planned steps: only checkpoints inside the budget count
    checkpoints = [c for c in step_dirs(run) if minutes_at(c) <= args.minutes] or step_dirs(run)[:1]
    for ckpt in checkpoints:
        if at_target(row := evaluate(ckpt, args.screen)):
            first = row
            break
    final = evaluate(checkpoints[-1], args.samples)
    final_model, final_task = load(checkpoints[-1])
    rollout = final_task.evaluate(final_model, n_samples=min(args.samples, 200), seed=final_task.eval_cfg["seed"],
                                  rollout_steps=8)  # the run itself evaluated k=1 only (cheap)

    summary = {"rules": args.rules, "budget_minutes": args.minutes, "threads": args.threads,
               "wall_minutes": None if wall is None else wall / 60, "steps": final["step"], "samples": args.samples,
               "first_at_target": first, "final": final,
               "final_rollout": {k: v for k, v in rollout.items() if k.startswith("rollout_divergence")},
               "checkpoints": rows, "run": str(run)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"life16_{rules_tag(args.rules)}.json"
    out.write_text(json.dumps(summary, indent=1))

    print()
    print(f"| rules | budget | steps | cell acc ({args.samples} boards) | board acc | "
          f"first at {CELL_TARGET:.1%} cells and {BOARD_TARGET:.0%} boards |")
    print("| --- | --- | --- | --- | --- | --- |")
    reached = (f"after {first['train_minutes']:.1f} min (step {first['step']}, {args.screen} boards)" if first
               else "not within the budget")
    print(f"| {args.rules} | {args.minutes:g} min x {args.threads} threads | {summary['steps']} | "
          f"{final['cell_accuracy']:.5f} | {final['board_accuracy']:.4f} | {reached} |")
    print(f"(rollout divergence at k=8 on 200 boards: "
          f"{summary['final_rollout'].get('rollout_divergence_k8', float('nan')):.5f}; {out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
