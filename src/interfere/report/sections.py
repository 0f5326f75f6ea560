"""The built-in sections of a run's report, in page order (registry.py says how to add one).

run           what was trained: experiment, task, model shape, steps, tokens, how it stopped; config.yaml
training      loss (per horizon when there are several), learning rate, training-batch accuracy, gradient norm
throughput    calibration.json (tokens/s and s/step over the measured steps, batch layout) and tokens/s by step
evaluation    eval.json, the held-out metrics at the end; a metric measured at k = 1, 2, ... (e.g. rollout
              divergence after k steps) as a curve over k; eval/* metrics logged during training, by step
rollouts      assets/rollouts/*.gif inline (model | truth | difference), the MP4s as links
samples       assets/samples/*.txt, text the model wrote during training
analyses      assets/plots/<tool>/, what `interfere interpret <tool>` drew
explorations  assets/explorations/<timestamp>/: summary.json (verdicts), summary.md, pictures
files         everything else under assets/: images inline, JSON as tables, text, other files as links
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

from interfere.formatting import flatten
from interfere.report.blocks import MIME, Figure, Heading, Links, Table, Text
from interfere.report.figures import line_plot, series, small_multiples
from interfere.report.registry import register
from interfere.report.rundir import RunDir

MAX_FIGURES = 12  # per group: a long run's rollouts are thinned to this many, first and last kept
MAX_TEXT = 4000  # characters of one text file shown
MAX_ROWS = 200


# ----- run ------------------------------------------------------------------------------------------------
@register("run", "Run", order=10)
def run_section(run: RunDir) -> list:
    cfg = run.config
    if not cfg:
        return []
    final, calib = _dict(run.json("eval.json")), _dict(run.json("calibration.json"))
    last = run.records[-1] if run.records else {}
    model, train = _dict(cfg.get("model")), _dict(cfg.get("train"))
    facts = {
        "run": run.name,
        "experiment": cfg.get("name"),
        "task": _describe(_dict(cfg.get("task"))),
        "model": (f"{model.get('n_layers')} layers, d_model {model.get('d_model')}, {model.get('n_heads')} heads, "
                  f"{model.get('positional_embedding_type')} positions"),
        "parameters": calib.get("n_params"),
        "steps": _steps(final.get("step", last.get("step")), calib.get("total_steps") or train.get("steps")),
        "tokens": final.get("tokens", last.get("tokens")),
        "stopped": final.get("stopped"),
        "training seconds": final.get("train_seconds"),
        "device": calib.get("device", cfg.get("device")),
        "dtype": calib.get("dtype", train.get("dtype")),
        "seed": cfg.get("seed"),
    }
    blocks: list = [Table.pairs({k: v for k, v in facts.items() if v is not None})]
    if run.config_text:
        blocks.append(Text(run.config_text, "config.yaml (the resolved config)"))
    return blocks


def _describe(task: dict) -> str:
    """'life: board=[16, 16], rules=B3/S23, ...': the task's name and its scalar settings."""
    shown = [f"{k}={v}" for k, v in task.items() if k not in ("name", "seed") and _short_value(v)]
    return f"{task.get('name', '?')}: {', '.join(shown)}" if shown else str(task.get("name", "?"))


def _short_value(v) -> bool:
    return isinstance(v, (str, int, float)) or (isinstance(v, list) and len(v) <= 4 and all(
        isinstance(x, (str, int, float)) for x in v))


def _steps(done, total) -> str | None:
    if done is None:
        return None
    return f"{done:,} of {total:,}" if isinstance(total, int) else f"{done:,}"


# ----- training -------------------------------------------------------------------------------------------
@register("training", "Training", order=20)
def training_section(run: RunDir) -> list:
    recs = [r for r in run.records if "loss" in r]  # training steps (eval/* records have no loss)
    if not recs:
        return []
    losses = ["loss"] + _horizons(recs, "loss")
    plots = [(losses, "Training loss", "cross-entropy (nats)", "loss", True),
             (["lr"], "Learning rate", "lr", "lr", False),
             (["acc"] + _horizons(recs, "acc"), "Accuracy on the training batches", "accuracy", "train_accuracy",
              False),
             (["grad_norm"], "Gradient norm (before clipping)", "global L2 norm", "grad_norm", True)]
    blocks: list = []
    summary = []
    for keys, title, ylabel, name, logy in plots:
        lines = [(k, *series(recs, k)) for k in keys]
        lines = [line for line in lines if line[1]]
        if lines:
            blocks.append(line_plot(lines, title, "step", ylabel, name, logy=logy))
            summary += [[label, ys[0], ys[-1], min(ys), max(ys)] for label, _, ys in lines]
    blocks.append(Table.of(["metric", "first", "last", "min", "max"], summary, "over the logged steps"))
    return blocks


def _horizons(recs: Sequence[dict], base: str) -> list[str]:
    """<base>_t1, <base>_t2, ... when there are at least two horizons (one is the same as <base>)."""
    keys = sorted({k for r in recs for k in r if re.fullmatch(rf"{base}_t\d+", k)}, key=lambda k: int(k.split("_t")[1]))
    if len(keys) >= 2:
        return keys
    if keys and not any(base in r for r in recs):
        return keys
    return []


# ----- throughput -----------------------------------------------------------------------------------------
@register("throughput", "Throughput", order=30)
def throughput_section(run: RunDir) -> list:
    calib = run.json("calibration.json")
    if not isinstance(calib, dict):
        return []
    blocks: list = [Table.pairs(flatten(calib), "calibration.json (tokens/s and s/step over the measured steps)")]
    xs, ys = series(run.records, "tokens_per_s")
    if len(xs) >= 2:
        blocks.append(line_plot([("tokens/s", xs, ys)], "Training throughput", "step", "tokens/s", "tokens_per_s"))
    return blocks


# ----- evaluation -----------------------------------------------------------------------------------------
_AT_K = re.compile(r"^(.+)_k(\d+)$")


@register("evaluation", "Evaluation", order=40)
def evaluation_section(run: RunDir) -> list:
    blocks: list = []
    final = run.json("eval.json")
    if isinstance(final, dict):
        blocks.append(Table.pairs(flatten(final), "eval.json: held-out metrics at the end of training",
                                  ("metric", "value")))
        for metric, points in _over_k(final).items():
            ks, vs = zip(*points)
            blocks.append(line_plot([(metric, list(ks), list(vs))], f"{metric} after k steps", "k", metric,
                                    f"{metric}_over_k", markers=True))
    logged = sorted({k for r in run.records for k in r if k.startswith("eval/") and not _AT_K.match(k)})
    curves = [(k.removeprefix("eval/"), *series(run.records, k)) for k in logged]
    curves = [c for c in curves if len(c[1]) >= 2]
    if curves:
        blocks.append(small_multiples(curves, "Held-out metrics during training", "step", "eval_by_step"))
    return blocks


def _over_k(metrics: dict) -> dict[str, list[tuple[int, float]]]:
    """{"rollout_divergence": [(1, v1), (2, v2), ...]} from keys rollout_divergence_k1, _k2, ... (two or more)."""
    out: dict[str, list[tuple[int, float]]] = {}
    for key, v in metrics.items():
        m = _AT_K.match(key)
        if m and isinstance(v, (int, float)) and not isinstance(v, bool):
            out.setdefault(m.group(1), []).append((int(m.group(2)), float(v)))
    return {k: sorted(p) for k, p in out.items() if len(p) >= 2}


# ----- media ----------------------------------------------------------------------------------------------
@register("rollouts", "Rollouts", order=50)
def rollouts_section(run: RunDir) -> list:
    gifs, videos = run.files("*.gif", "assets/rollouts"), run.files("*.mp4", "assets/rollouts")
    run.show(*gifs, *videos)
    blocks: list = [Figure.of_file(g, f"rollout at {_label(g)}: model | truth | difference", f"rollout_{g.stem}")
                    for g in _spread(gifs, MAX_FIGURES)]
    if videos:
        blocks.append(Links([(run.rel(v), run.rel(v)) for v in videos], "MP4 videos (files beside this report)"))
    return blocks


@register("samples", "Text samples", order=55)
def samples_section(run: RunDir) -> list:
    texts = run.files("*.txt", "assets/samples")
    run.show(*texts)
    return [Text(_read_text(t), f"sample at {_label(t)}") for t in _spread(texts, MAX_FIGURES)]


def _label(path: Path) -> str:
    m = re.fullmatch(r"step_0*(\d+)", path.stem)
    return f"step {m.group(1)}" if m else path.stem


def _spread(items: list, n: int) -> list:
    """At most n items, evenly spaced, the first and the last kept."""
    if len(items) <= n:
        return items
    idx = sorted({round(i * (len(items) - 1) / (n - 1)) for i in range(n)})
    return [items[i] for i in idx]


# ----- analyses and explorations --------------------------------------------------------------------------
@register("analyses", "Analyses", order=60)
def analyses_section(run: RunDir) -> list:
    root = run.path / "assets" / "plots"
    blocks: list = []
    for folder in _folders(root):
        shown = folder_blocks(run, folder)
        if shown:
            blocks += [Heading(folder.name.replace("_", " ")), *shown]
    return blocks


@register("explorations", "Explorations", order=70)
def explorations_section(run: RunDir) -> list:
    blocks: list = []
    for folder in _folders(run.path / "assets" / "explorations"):
        shown = folder_blocks(run, folder, recursive=True)
        if shown:
            blocks += [Heading(folder.name), *shown]
    return blocks


def _folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []


def folder_blocks(run: RunDir, folder: Path, recursive: bool = False) -> list:
    """A folder's files as blocks: summaries first (JSON tables, then text), then pictures, then links."""
    files = [f for f in run.files("**/*" if recursive else "*", run.rel(folder)) if f not in run.shown]
    run.show(*files)
    return file_blocks(run, files)


def file_blocks(run: RunDir, files: list[Path]) -> list:
    by_kind: dict[str, list[Path]] = {"json": [], "text": [], "image": [], "other": []}
    for f in files:
        suffix = f.suffix.lower()
        kind = ("json" if suffix == ".json" else "text" if suffix in (".md", ".txt") else
                "image" if suffix in MIME else "other")
        by_kind[kind].append(f)
    blocks: list = []
    for f in by_kind["json"]:
        data = run.json(f)
        blocks += json_blocks(data, run.rel(f)) if data is not None else [Text("(does not parse as JSON)", run.rel(f))]
    blocks += [Text(_read_text(f), run.rel(f)) for f in by_kind["text"]]
    blocks += [Figure.of_file(f, run.rel(f), f.stem) for f in by_kind["image"]]
    if by_kind["other"]:
        blocks.append(Links([(run.rel(f), run.rel(f)) for f in by_kind["other"]], "files beside this report"))
    return blocks


def json_blocks(data: Any, caption: str) -> list:
    """A JSON value as tables: scalars as key | value (nested keys dotted), lists of objects as their own tables."""
    if isinstance(data, list) and data and all(isinstance(x, dict) for x in data):
        return [_records_table(data, caption)]
    if not isinstance(data, dict):
        return [Text(_clip(json.dumps(data)), caption)]
    scalars, tables = {}, []
    for key, v in flatten(data).items():
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            tables.append(_records_table(v, f"{caption}: {key}"))
        else:
            scalars[key] = _cell(v)
    return ([Table.pairs(scalars, caption)] if scalars else []) + tables


def _records_table(items: list[dict], caption: str) -> Table:
    rows = [flatten(x) for x in items[:MAX_ROWS]]
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    more = f" (first {MAX_ROWS} of {len(items)})" if len(items) > MAX_ROWS else ""
    return Table.of(columns, [[_cell(r.get(c)) for c in columns] for r in rows], caption + more)


def _cell(v: Any) -> Any:
    return _clip(json.dumps(v), 160) if isinstance(v, (list, dict)) else v


def _clip(s: str, n: int = MAX_TEXT) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _read_text(path: Path) -> str:
    return _clip(path.read_text(encoding="utf-8", errors="replace"))


# ----- the rest -------------------------------------------------------------------------------------------
@register("files", "Other files", order=1000)
def files_section(run: RunDir) -> list:
    """Whatever no section above showed (a tool added later still appears here before it has its section)."""
    rest = [f for f in run.files("**/*", "assets") if f not in run.shown]
    run.show(*rest)
    return file_blocks(run, rest)


def _dict(x) -> dict:
    return x if isinstance(x, dict) else {}
