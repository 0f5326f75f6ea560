"""Terminal tables (rich) of the analysis results: one `*_tables(result)` per tool, printed by `show`."""

from __future__ import annotations

import sys
from typing import Any, Iterable

Table = tuple[str, list[str], list[list[Any]]]  # (title, columns, rows)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != v:
            return "nan"
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def show(tables: Iterable[Table], file=None) -> None:
    """Print the tables with rich (plain aligned text when the stream is not a terminal)."""
    from rich.console import Console
    from rich.table import Table as RichTable

    file = file or sys.stdout
    console = Console(file=file, width=None if file.isatty() else 160)
    for title, columns, rows in tables:
        t = RichTable(title=title, title_justify="left", box=None, header_style="bold", pad_edge=False)
        for i, c in enumerate(columns):
            t.add_column(c, justify="left" if i == 0 else "right", overflow="fold")
        for row in rows:
            t.add_row(*(_fmt(v) for v in row))
        console.print(t)
        console.print()


def _tok(s: str) -> str:
    return repr(s)[1:-1] if s else "''"


def lens_tables(r, k: int = 3) -> list[Table]:
    out = []
    for j, p in enumerate(r.positions):
        rows = []
        for i, label in enumerate(r.labels):
            row = [label] + [f"{_tok(r.top_tokens[i][j][x])} {float(r.top_probs[i, j, x]):.2f}" for x in range(k)]
            if r.target_probs is not None:
                row += [float(r.target_probs[i, j]), int(r.target_ranks[i, j])]
            rows.append(row)
        cols = ["layer"] + [f"top {x + 1}" for x in range(k)]
        if r.target_probs is not None:
            cols += [f"p(next={_tok(r.input_tokens[p + 1])})", "rank"]
        out.append((f"logit lens at position {p} ({_tok(r.input_tokens[p])})", cols, rows))
    return out


def attention_tables(r, n: int = 40) -> list[Table]:
    heads = r.heads()
    heads.sort(key=lambda d: (d["label"] in ("mixed", "uniform"), -max(d[s] for s in
                              ("previous_token", "first_token", "current_token", "sparse"))))
    names = list(r.scores)
    rows = [[h["name"], h["label"], *(h[s] for s in names), h["mean_distance"]] for h in heads[:n]]
    counts: dict[str, int] = {}
    for h in heads:
        counts[h["label"]] = counts.get(h["label"], 0) + 1
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    return [(f"attention heads ({summary}; window={r.window})", ["head", "class", *names, "mean dist"], rows)]


def induction_tables(r, n: int = 10) -> list[Table]:
    names = ["induction", "prefix_matching", "duplicate_token", "previous_token"]
    rows = [[h["name"], *(h[s] for s in names)] for h in r.top_heads(n)]
    ih = r.head(*r.induction_head)
    ph = r.head(*r.previous_token_head) if r.previous_token_head else None
    summary = [["loss on the first repeat", r.loss_first], ["loss on the second repeat", r.loss_second],
               ["induction head", f"{ih['name']} ({ih['induction']:.2f})"],
               ["its previous-token head", f"{ph['name']} ({ph['previous_token']:.2f})" if ph else "-"]]
    return [(f"induction on repeated random tokens (L={r.seq_len})", ["", "value"], summary),
            (f"top {n} heads by induction score", ["head", *names], rows)]


def patching_tables(r, n: int = 15) -> list[Table]:
    rows = [[d["component"], d["recovery"], d["category"]] for d in r.ranked(n)]
    head = [["metric", r.metric_name], ["clean", r.clean], ["corrupted", r.corrupted], ["position", r.position]]
    return [("activation patching", ["", "value"], head),
            (f"top {n} components by recovery", ["component", "recovery", "category"], rows)]


def dla_tables(r, n: int = 10) -> list[Table]:
    target = _tok(r.answer_str) + (f" - {_tok(r.wrong_str)}" if r.wrong is not None else "")
    rows = [[h["name"], h["dla"]] for h in r.top_heads(n)]
    layers = [[f"L{i}", float(r.attn[i]), None if r.mlp is None else float(r.mlp[i])] for i in range(len(r.attn))]
    other = [[k, v] for k, v in r.other.items()] + [["sum of all terms", r.total], ["model's own value", r.model_value]]
    return [(f"direct logit attribution to {target} at position {r.position}", ["head", "dla"], rows),
            ("per layer", ["layer", "attention", "mlp"], layers),
            ("other terms", ["term", "value"], other)]


def probe_tables(c) -> list[Table]:
    if c.kind == "ridge":
        rows = [[f"L{lay}", s.r2, s.r2_train, s.alpha, s.n_train, s.n_test] for lay, s in zip(c.layers, c.scores)]
        cols = ["layer", "held-out R2", "train R2", "alpha", "n train", "n test"]
    else:
        rows = [[f"L{lay}", s.auc, s.accuracy, s.chance, s.n_train, s.n_test] for lay, s in zip(c.layers, c.scores)]
        cols = ["layer", "held-out AUC", "accuracy", "majority", "n train", "n test"]
    return [(f"{c.kind} probe for {c.target} on {c.hook}", cols, rows)]
