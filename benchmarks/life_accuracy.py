"""How good does a Game of Life model get in a fixed CPU budget? (16x16 boards)

One rule (`--rules B3/S23`, Conway): trains `exp=life16` for 30 minutes. Every rule (`--rules random`):
trains `exp=life16_rules` for 60 minutes on the training rules and judges it on rules it never saw (the
held-out split). Either way the final checkpoint is evaluated on --samples fresh boards (a fixed seed,
disjoint from training) against the targets: cell accuracy >= 99.9% and board accuracy >= 99%. The time
to reach them is the first checkpoint whose --screen boards meet both (screening every checkpoint on
10,000 boards would cost more CPU than the training). Evaluation happens after training and is not
counted in the budget. With random rules the table adds the training rules, each named rule, the 8-step
rollout divergence and where the errors sit (accuracy per cell state and live-neighbour count).

The cosine schedule is sized to the budget: a short calibration run measures seconds per step on this
machine, and the real run gets as many steps as fit (train.max_minutes stops it if the machine slows down).

    python benchmarks/life_accuracy.py                       # Conway (B3/S23), 30 minutes
    python benchmarks/life_accuracy.py --rules random        # every rule, judged on held-out ones, 60 minutes
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

from throughput import cpu_info  # a sibling script: benchmarks/ is on sys.path when run

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CELL_TARGET, BOARD_TARGET = 0.999, 0.99


def start_train(*words: str, threads: int) -> subprocess.Popen:
    """`interfere train ... --json` in a process of its own on `threads` threads (stdout: the final JSON only)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    return subprocess.Popen([sys.executable, "-m", "interfere", "train", *words, "--json"], env=env,
                            stdout=subprocess.PIPE, text=True)


def run_dir_of(proc: subprocess.Popen) -> Path:
    """Wait for a `start_train` process and return its run directory."""
    out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"interfere train failed (exit status {proc.returncode}); its errors are above")
    return Path(json.loads(out)["run_dir"])


def rules_tag(rules: str) -> str:
    return "conway" if rules == "B3/S23" else rules.replace("/", "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, help="training-time budget (default 30, 60 with --rules random)")
    parser.add_argument("--rules", default="B3/S23", help='a rule such as B3/S23, or "random"')
    parser.add_argument("--samples", type=int, default=10_000, help="held-out boards per evaluation")
    parser.add_argument("--screen", type=int, default=500, help="held-out boards for screening checkpoints")
    parser.add_argument("--checkpoints", type=int, default=15, help="checkpoints saved along the run")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads for training")
    parser.add_argument("--run", type=Path, help="evaluate this finished run instead of training one")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    general = args.rules == "random"
    args.minutes = args.minutes or (60.0 if general else 30.0)
    runs_dir = RESULTS / "runs"
    tag = rules_tag(args.rules)
    common = (["exp=life16_rules"] if general else ["exp=life16", f"task.rules={args.rules}"]) + [
        f"runs_dir={runs_dir}", f"train.max_minutes={args.minutes}", "train.progress=false", "train.artifacts_every=0",
        "train.eval_every=0", "task.eval.samples=256", "task.eval.rollout_steps=1"]

    if args.run:
        return report(args, args.run, wall=None)  # the wall time of that run is not known here
    # a throwaway run: only its calibration.json is read
    calib = run_dir_of(start_train(*common, f"name=life16_{tag}_calibration", "train.steps=12",
                                   "train.ckpt_every=0", threads=args.threads))
    s_per_step = json.loads((calib / "calibration.json").read_text())["s_per_step"]
    steps = max(20, int(args.minutes * 60 / s_per_step * 0.97))
    every = max(1, steps // args.checkpoints)
    print(f"calibration: {s_per_step:.2f} s/step -> {steps} steps in {args.minutes:g} min, checkpoint every {every}",
          flush=True)

    t0 = time.time()
    run = run_dir_of(start_train(*common, f"name={'life16_rules' if general else 'life16_' + tag}",
                                 f"train.steps={steps}", f"train.ckpt_every={every}", threads=args.threads))
    return report(args, run, wall=time.time() - t0)


def training_minutes(run: Path) -> dict[int, float]:
    """step -> training minutes so far, from the run's log."""
    elapsed = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "s_per_step" in record and "loss" in record:
            elapsed[record["step"]] = record["elapsed"] / 60
    return elapsed


def report(args, run: Path, wall: float | None) -> int:
    from functools import lru_cache

    from interfere import load
    from interfere.tasks.life import rules as R
    from interfere.train.checkpoint import step_dirs

    general = args.rules == "random"
    judged_on = "heldout" if general else None  # rules the model never trained on, or its own rule
    elapsed = training_minutes(run)

    def minutes_at(ckpt: Path) -> float:
        step = int(ckpt.name.split("_")[1])
        later = [m for s, m in elapsed.items() if s >= step]  # the next logged step: an upper bound
        return min(later) if later else max(elapsed.values(), default=float("nan"))

    load_once = lru_cache(maxsize=1)(load)  # the final checkpoint answers a dozen evaluations

    def evaluate(ckpt: Path, n: int, rules=judged_on, steps: int = 1) -> dict:
        model, task = load_once(ckpt)
        m = task.evaluate(model, n_samples=n, seed=task.eval_cfg["seed"], rollout_steps=steps, rules=rules)
        return {"step": int(ckpt.name.split("_")[1]), "train_minutes": minutes_at(ckpt), "samples": n, **m}

    def screened(ckpt: Path, n: int) -> dict:
        row = evaluate(ckpt, n)
        print(f"step {row['step']:5d}  {row['train_minutes']:5.1f} min  {n:6d} boards  cells {row['cell_accuracy']:.5f}  "
              f"boards {row['board_accuracy']:.4f}", flush=True)
        rows.append({k: row[k] for k in ("step", "train_minutes", "samples", "cell_accuracy", "board_accuracy")})
        return row  # in full: the final one's (state, count) table is printed

    rows, first = [], None
    # a slowed-down machine can overrun the planned steps: only checkpoints inside the budget count
    checkpoints = [c for c in step_dirs(run) if minutes_at(c) <= args.minutes] or step_dirs(run)[:1]
    for ckpt in checkpoints:
        if at_target(screened(ckpt, args.screen)):
            first = rows[-1]
            break
    final = screened(checkpoints[-1], args.samples)
    rollout = evaluate(checkpoints[-1], min(args.samples, 200), steps=8)  # the run itself evaluated k=1 only
    table = [(f"{'held-out rules' if general else args.rules}", final)]
    if general:
        table.append(("training rules", evaluate(checkpoints[-1], 2000, rules="random")))
        table += [(f"{name} ({R.NAMED[name]})", evaluate(checkpoints[-1], 1000, rules=R.NAMED[name]))
                  for name in R.NAMED]

    summary = {"rules": args.rules, "judged_on": judged_on or args.rules, "budget_minutes": args.minutes,
               "threads": args.threads, "cpu": cpu_info()["name"], "wall_minutes": None if wall is None else wall / 60,
               "steps": final["step"], "samples": args.samples, "first_at_target": first,
               "final": {k: v for k, v in final.items() if k != "rule"},
               "final_rollout": {k: v for k, v in rollout.items() if k.startswith("rollout_divergence")},
               "table": {label: {k: m[k] for k in ("samples", "cell_accuracy", "board_accuracy")} for label, m in table},
               "checkpoints": rows, "run": str(run)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"life16_{rules_tag(args.rules)}.json"
    out.write_text(json.dumps(summary, indent=1))
    print_tables(args, summary, table, final)
    print(f"({out})")
    return 0


def at_target(row: dict) -> bool:
    return row["cell_accuracy"] >= CELL_TARGET and row["board_accuracy"] >= BOARD_TARGET


def print_tables(args, summary: dict, table: list, final: dict) -> None:
    first = summary["first_at_target"]
    reached = (f"after {first['train_minutes']:.1f} min (step {first['step']}, {args.screen} boards)" if first
               else "not within the budget")
    print(f"\n{summary['cpu']}, {args.threads} threads, {args.minutes:g} min budget, {summary['steps']} steps; "
          f"first at {CELL_TARGET:.1%} cells and {BOARD_TARGET:.0%} boards ({summary['judged_on']}): {reached}\n")
    print("| boards of | boards | cell accuracy | board accuracy |")
    print("| --- | ---: | ---: | ---: |")
    for label, m in table:
        print(f"| {label} | {m['samples']} | {m['cell_accuracy']:.5f} | {m['board_accuracy']:.4f} |")
    k8 = summary["final_rollout"].get("rollout_divergence_k8", float("nan"))
    print(f"\nrollout divergence after 8 steps ({summary['judged_on']}, 200 boards): {k8:.5f}")
    print("\naccuracy by (cell state, live neighbours), " + summary["judged_on"] + ":\n")
    print("| state | " + " | ".join(str(c) for c in range(9)) + " |")
    print("| --- |" + " ---: |" * 9)
    for state, entry in (("dead (B)", "B"), ("alive (S)", "S")):
        cells = [final["by_state_count"][f"{entry}{c}"] for c in range(9)]
        print(f"| {state} | " + " | ".join("-" if v is None else f"{v:.4f}" for v in cells) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
