"""`interfere lens dump|train|eval [key=value ...] [--json]`: the consistency lens (interfere.lens)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from interfere.cli.common import add_json, add_overrides, print_json, print_table
from interfere.cli.words import option, parse_words, to_bool, to_int
from interfere.errors import ConfigError

HELP = "consistency lens: dump activations, train a decoder/encoder that explains them in words, score it"
DESCRIPTION = """\
A consistency lens explains the activation at layer L, position p of a frozen model in a few tokens
(decoder) and reads them back into an activation (encoder); patched into the model at (L, p), the
reconstruction should leave the next-token distribution as it was (KL). Three steps:
  dump   activations of a text run (run=<id>) or of model=smollm2 into safetensors shards
  train  a lens on a dump with the usual training loop (config: conf/task/lens.yaml, conf/lens/default.yaml)
  eval   KL and FVE of the lens on held-out activations, against baselines, with verbose samples"""

EPILOG = """\
examples:
  interfere lens dump run=<text_run_id> layer=2 out=lens_data/shakespeare_L2
  interfere lens train data=lens_data/shakespeare_L2 train.steps=2000
  interfere lens eval                               the newest run (a lens run), as tables
  interfere lens eval run=<lens_run_id> samples=1000 verbose=5 --json
  interfere lens dump model=smollm2 layer=15 n_train=2048 n_val=256"""

DUMP_KEYS = {"run": "text run id", "model": "smollm2", "runs_dir": "dir", "out": "dir", "layer": "L",
             "n_train": "N", "n_val": "N", "ctx": "tokens per window", "min_pos": "P", "seed": "S",
             "shard_size": "N", "batch_size": "N", "device": "auto|cpu|cuda"}
EVAL_KEYS = {"run": "lens run id", "ckpt": "checkpoint dir", "data": "dump dir (an untrained lens)",
             "runs_dir": "dir", "device": "auto|cpu|cuda", "samples": "N", "seed": "S", "verbose": "N",
             "untrained": "true|false"}
ACTIONS = ("dump", "train", "eval")


def add_arguments(p) -> None:
    p.add_argument("action", choices=ACTIONS, help="dump | train | eval")
    add_overrides(p, "dump: run=<id>|model=smollm2, layer=, out=, ...; train: Hydra overrides (data=<dump> is "
                     "short for task.data=); eval: run=<id>, samples=, verbose=")
    add_json(p)


def run(args) -> int:
    action = {"dump": _dump, "train": _train, "eval": _eval}[args.action]
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        result = action(args.overrides)
    if args.json:
        print_json(result)
    else:
        _show(args.action, result)
    return 0


# ----- dump -----------------------------------------------------------------------------------------
def _dump(overrides: list[str]) -> dict:
    from interfere.device import pick_device
    from interfere.lens.dump import dump
    from interfere.lens.subject import load_subject, subject_spec

    w = parse_words(overrides, DUMP_KEYS, "lens dump")
    runs_dir = w.get("runs_dir", "runs")
    spec = subject_spec(w.get("run"), w.get("model"), runs_dir)
    layer = option(w, "layer", None, to_int, minimum=0)
    subject = load_subject(spec, pick_device(w.get("device", "auto")))
    layer = subject.n_layers // 2 if layer is None else layer
    out = w.get("out") or f"lens_data/{spec.get('run') or spec.get('model')}_L{layer}"
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    manifest = dump(subject, out, layer, option(w, "n_train", 8192, to_int, minimum=1),
                    option(w, "n_val", 1024, to_int, minimum=1), ctx=option(w, "ctx", 64, to_int, minimum=2),
                    min_pos=option(w, "min_pos", 8, to_int, minimum=0), seed=option(w, "seed", 0, to_int),
                    shard_size=option(w, "shard_size", 1024, to_int, minimum=1),
                    batch_size=option(w, "batch_size", 64, to_int, minimum=1), log=log)
    return {"out": str(Path(out).resolve()), **manifest}


# ----- train ----------------------------------------------------------------------------------------
def _train(overrides: list[str]) -> dict:
    import json

    import interfere.lens  # noqa: F401 (registers task.name=lens)
    from interfere.config import compose
    from interfere.train import train

    words = [f"task.{o}" if o.startswith("data=") else o for o in overrides]
    resume = next((o.split("=", 1)[1] for o in words if o.startswith("resume=")), None)
    if resume and resume != "null":
        from interfere.train.resume import resume_config

        runs_dir = next((o.split("=", 1)[1] for o in words if o.startswith("runs_dir=")), "runs")
        cfg = resume_config(resume, words, runs_dir=runs_dir)
    else:
        cfg = compose(["+lens=default", *words])
    run_dir = Path(train(cfg))
    eval_file = run_dir / "eval.json"
    return {"run": run_dir.name, "run_dir": str(run_dir),
            "eval": json.loads(eval_file.read_text()) if eval_file.is_file() else None}


# ----- eval -----------------------------------------------------------------------------------------
def _eval(overrides: list[str]) -> dict:
    from interfere.lens.evaluate import evaluate_lens
    from interfere.lens.runs import fresh_lens, load_lens

    w = parse_words(overrides, EVAL_KEYS, "lens eval")
    if "data" in w and ("run" in w or "ckpt" in w):
        raise ConfigError("give run=<lens run> (a trained lens) or data=<dump> (an untrained one), not both")
    if "data" in w:
        task, lens, ckpt = _untrained_only(w["data"], w.get("device")), None, None
        lens = fresh_lens(task)
    else:
        task, lens, ckpt = load_lens(w.get("ckpt") or w.get("run"), w.get("runs_dir", "runs"), w.get("device"))
    untrained = fresh_lens(task) if option(w, "untrained", ckpt is not None, to_bool) else None
    result = evaluate_lens(task, lens, option(w, "samples", None, to_int, minimum=1), option(w, "seed", None, to_int),
                           untrained=untrained, verbose=option(w, "verbose", 3, to_int, minimum=0))
    return {"lens": str(ckpt) if ckpt else "untrained", "data": task.data, "subject": task.manifest["subject"],
            **result.metrics, "samples": result.samples}


def _untrained_only(data: str, device):
    import interfere.lens  # noqa: F401
    from interfere.config import compose
    from interfere.device import pick_device
    from interfere.tasks import build_task

    cfg = compose(["+lens=default", f"task.data={data}"])
    return build_task(cfg.task, pick_device(device or "auto"))


# ----- output ---------------------------------------------------------------------------------------
def _show(action: str, r: dict) -> None:
    if action == "dump":
        splits = ", ".join(f"{s} {e['n']} ({len(e['shards'])} shards)" for s, e in r["splits"].items())
        print(f"dump   {r['out']}: layer {r['layer']} ({r['hook']}), ctx {r['ctx']}, {splits}")
    elif action == "train":
        print(f"run    {r['run_dir']}")
        if r["eval"]:
            print(f"eval   lens KL {r['eval']['lens_kl']:.4f} (mean baseline {r['eval']['mean_kl']:.4f}), "
                  f"FVE {r['eval']['lens_fve']:.3f}, commonest token {r['eval']['top_token_freq']:.3f}")
    else:
        _show_eval(r)


def _show_eval(r: dict) -> None:
    from interfere.lens.evaluate import BASELINES

    names = [n for n in ("lens", *BASELINES) if f"{n}_kl" in r]
    rows = [[n, r[f"{n}_kl"], r[f"{n}_fve"], r[f"{n}_kl"] / r["mean_kl"] if r["mean_kl"] else None] for n in names]
    print(f"lens   {r['lens']}\ndata   {r['data']}")
    print_table(f"{r['n']} held-out activations, layer {r['layer']}",
                ["reconstruction", "KL (nats)", "FVE", "KL / mean's"], rows)
    print(f"explanations: {r['length']} tokens; commonest token's frequency {r['top_token_freq']:.3f}; "
          f"distinct {r['distinct_share']:.3f}")
    for s in r["samples"]:
        print(f"\n  input       ...{s['text']!r} (p={s['position']})")
        print(f"  explanation {''.join(s['explanation'])!r}")
        print(f"  original    {_preds(s['top_original'])}")
        print(f"  lens        {_preds(s['top_reconstructed'])}   KL {s['kl']:.3f}")


def _preds(top: list) -> str:
    return "  ".join(f"{t!r} {p:.2f}" for t, p in top)
