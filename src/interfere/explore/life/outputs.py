"""Run one exploration tool and keep what it found: its pictures and a summary.json (plus summary.md for
`hypotheses`) in a fresh folder under the run, assets/explorations/<yyyymmdd-hhmmss>_<tool>/."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from interfere.explore.life import figures, tools, verdicts
from interfere.files import atomic_write_json, atomic_write_text

TOOLS = ("attention", "probes", "rules", "layers", "embed", "contrib", "rule-vectors", "hypotheses")
SAMPLING = ("boards", "seed", "rules")  # the keywords every tool that draws boards takes


def output_dir(run_dir: Path, tool: str, now: float | None = None) -> Path:
    """A new folder for one tool run (claimed with mkdir, so two runs in the same second get _2, _3, ...)."""
    root = Path(run_dir) / "assets" / "explorations"
    root.mkdir(parents=True, exist_ok=True)
    base = f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}_{tool}"
    for n in range(1, 1000):
        path = root / (base if n == 1 else f"{base}_{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free folder name for {base} under {root}")


def _pick(opts: dict, *keys: str) -> dict:
    return {k: opts[k] for k in keys if opts.get(k) is not None}


def _attention(model, task, out, o):
    maps = tools.attention(model, task, **_pick(o, *SAMPLING))
    return maps, figures.attention(maps, out, query=o.get("query"), video=bool(o.get("video")))


def _probes(model, task, out, o):
    result = tools.probes(model, task, **_pick(o, *SAMPLING))
    return result, figures.probes(result, out)


def _rules(model, task, out, o):
    usage = tools.rule_usage(model, task, **_pick(o, *SAMPLING, "heads"))
    return usage, figures.rules(usage.maps, usage.flips, out)


def _layers(model, task, out, o):
    r = tools.layers(model, task, **_pick(o, *SAMPLING))
    return r, figures.layers(r, out)


def _embed(model, task, out, o):
    pca = tools.embed(model, task, **_pick(o, *SAMPLING))
    return pca, figures.embed(pca, out)


def _contrib(model, task, out, o):
    c = tools.contrib(model, task, **_pick(o, "seed", "rules", "layer", "head", "query"))
    return c, figures.contrib(c, out)


def _rule_vectors(model, task, out, o):
    v = tools.rule_vectors(model, task)
    return v, figures.rule_vectors(v, out)


def _hypotheses(model, task, out, o):
    h = tools.hypotheses(model, task, **_pick(o, *SAMPLING, "heads"))
    shown = {"H1": figures.attention(h.maps, out, query=o.get("query"), video=bool(o.get("video"))),
             "H2": figures.probes(h.probes, out), "H3": figures.rules(h.maps, h.usage.flips, out),
             "H4": figures.layers(h.roles, out)}
    h3 = "rules_flips.png" if h.usage.flips.testable else "rules_attention.png"
    first = {"H1": "attention_centred.png", "H3": h3}
    picked = {k: first.get(k, paths[0].name) for k, paths in shown.items()}
    text = verdicts.markdown(h.verdicts, o.get("model_name", "this model"), picked)
    summary = atomic_write_text(out / "summary.md", text)
    return h, [p for paths in shown.values() for p in paths] + [summary]


RUNNERS = {"attention": _attention, "probes": _probes, "rules": _rules, "layers": _layers, "embed": _embed,
           "contrib": _contrib, "rule-vectors": _rule_vectors, "hypotheses": _hypotheses}


def explore(tool: str, model, task, out: Path, **opts: Any) -> dict:
    """Run `tool`, write its pictures and summary.json into `out`; the record summary.json holds.

    opts: boards, seed, rules (every tool that draws boards); heads (rules, hypotheses: patch each head);
    layer, head, query (contrib; query also picks the attention tool's single-cell picture); video (attention:
    an MP4 and a GIF with a frame per head); model_name (for summary.md).
    """
    if tool not in RUNNERS:
        raise ValueError(f"unknown tool {tool!r}; choose one of {', '.join(TOOLS)}")
    t0 = time.time()
    result, paths = RUNNERS[tool](model, task, Path(out), opts)
    record = {"tool": tool, "model": opts.get("model_name"), "out": str(out), "seconds": round(time.time() - t0, 2),
              "files": [str(p) for p in paths], "result": result.to_json()}
    atomic_write_json(Path(out) / "summary.json", record)
    record["files"].append(str(Path(out) / "summary.json"))
    return record
