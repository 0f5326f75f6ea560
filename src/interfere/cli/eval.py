"""`interfere eval [run=<id>[,<id>...]|ckpt=<path>] [--json]`: held-out metrics of trained runs."""

from __future__ import annotations

import contextlib
import inspect
import sys

from interfere.cli.common import add_json, add_overrides, flatten, print_json, print_table
from interfere.cli.words import RUN_KEYS, load_run, option, parse_words, to_int
from interfere.errors import ConfigError

HELP = "evaluate a run's checkpoint on held-out data (the newest run unless run=<id> or ckpt=<path>)"
DESCRIPTION = """\
Evaluate checkpoints with their task's own metrics. The number of samples and the seed come from the
run's config (task.eval.samples, task.eval.seed) unless given here. Several runs (run=a,b) give one
column each. A Life run evaluates on other rules with task.rules= (a rule such as B36/S23, heldout,
random, or a list [B3/S23,B36/S23]); `in_training` (`in_training_share` for a set) says whether the run
trained on them."""

EPILOG = """\
examples:
  interfere eval                                    the newest run (runs/latest), as a table
  interfere eval run=<run_id> task.eval.samples=1000 --json
  interfere eval run=<run_a>,<run_b>                compare runs: one column each
  interfere eval ckpt=runs/<run_id>/checkpoints/step_100"""

KEYS = {
    **RUN_KEYS,
    "run": "run id or run dir[,...]",
    "task.eval.samples": "N",
    "task.eval.seed": "S",
    "task.rules": "B36/S23|heldout|random|[r1,r2]",
}

META = ("run", "step", "seed")  # printed first; the task's metrics follow


def add_arguments(p) -> None:
    add_overrides(p, "run=<id>[,<id>...] | ckpt=<path>, runs_dir=<dir>, device=<d>, task.eval.samples=<N>, "
                     "task.eval.seed=<S>, task.rules=<rules> (Life)")
    add_json(p)


def run(args) -> int:
    words = parse_words(args.overrides, KEYS, "eval")
    targets = [{**words, "run": t} for t in words["run"].split(",") if t] if "run" in words else [words]
    if not targets:
        raise ConfigError("run= is empty; give run=<id> (`interfere runs` lists them)")
    samples = option(words, "task.eval.samples", None, to_int, minimum=1)
    seed = option(words, "task.eval.seed", None, to_int)
    rules = _rules(words["task.rules"]) if "task.rules" in words else None

    # With --json, anything the library prints goes to stderr: stdout holds the JSON object only.
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        results = [_evaluate(t, samples, seed, rules) for t in targets]

    if args.json:
        print_json(results[0] if len(results) == 1 else {"runs": results})
    else:
        _table(results)
    return 0


def _rules(value: str):
    """task.rules=B36/S23 | heldout | [B3/S23,B36/S23] -> a string or a list of strings (YAML, as Hydra reads it)."""
    import yaml

    try:
        rules = yaml.safe_load(value)
    except yaml.YAMLError:
        rules = None
    if not (isinstance(rules, str) or (isinstance(rules, list) and rules and all(isinstance(r, str) for r in rules))):
        raise ConfigError(f"task.rules={value} is not a rule, a set (heldout, random) or a list like [B3/S23,B36/S23]")
    return rules


def _evaluate(words: dict, samples, seed, rules=None) -> dict:
    from omegaconf import OmegaConf

    from interfere.train.checkpoint import read_state
    from interfere.train.runs import run_config, run_dir_of

    model, task, ckpt = load_run(words)
    run_cfg = run_config(run_dir_of(ckpt))
    if samples is None:
        samples = OmegaConf.select(run_cfg, "task.eval.samples")
    if seed is None:
        seed = OmegaConf.select(run_cfg, "task.eval.seed")
    if rules is None:
        metrics = task.evaluate(model, samples, seed)
    elif "rules" in inspect.signature(task.evaluate).parameters:
        metrics = task.evaluate(model, samples, seed, rules=rules)
    else:
        raise ConfigError(f"task.rules= applies to Game of Life runs; {run_dir_of(ckpt).name} is a "
                          f"{OmegaConf.select(run_cfg, 'task.name')} run")
    try:
        step = read_state(ckpt).get("step")
    except Exception:  # an evaluation does not need the training state
        step = None
    return {"run": run_dir_of(ckpt).name, "step": step, "seed": seed, "n_samples": samples,
            **metrics, "ckpt": str(ckpt)}


def _table(results: list[dict]) -> None:
    flat = [flatten({k: (str(v) if k == "seed" else v) for k, v in r.items() if k not in ("run", "ckpt")})
            for r in results]
    keys: list[str] = []
    for f in flat:
        keys += [k for k in f if k not in keys]
    if len(results) == 1:
        r = results[0]
        rows = [["run", r["run"]], ["checkpoint", r["ckpt"]], *([k, flat[0].get(k)] for k in keys)]
        print_table(None, ["metric", "value"], rows)
    else:
        print_table(None, ["metric", *(r["run"] for r in results)], [[k, *(f.get(k) for f in flat)] for k in keys])
