"""PNG pictures of the analysis results (matplotlib, Agg backend), each written atomically.

Every function takes a result object of the matching tool and an output directory, writes its PNGs
there (a temporary file renamed into place, so a reader never sees half an image) and returns their paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from interfere.files import atomic_write


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str | Path, dpi: int = 120) -> Path:
    """Write a figure to `path` atomically and close it."""
    try:
        with atomic_write(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    finally:
        _plt().close(fig)
    return Path(path)


def _short(s: str, n: int = 10) -> str:
    s = s.replace("\n", "\\n")
    return s if len(s) <= n else s[: n - 1] + "…"


def heatmap(matrix: torch.Tensor, path: str | Path, title: str, xlabel: str = "", ylabel: str = "",
            xticklabels: Sequence[str] | None = None, yticklabels: Sequence[str] | None = None,
            cmap: str = "viridis", center: bool = False, vmin: float | None = None, vmax: float | None = None,
            annotate: bool | None = None, colorbar_label: str = "") -> Path:
    """A labelled heatmap of a 2-D tensor; `center` makes a diverging map symmetric around zero."""
    plt = _plt()
    m = matrix.detach().float().cpu().numpy()
    rows, cols = m.shape
    fig, ax = plt.subplots(figsize=(min(2 + 0.45 * cols, 22), min(1.5 + 0.4 * rows, 16)))
    if center:
        lim = float(abs(m).max()) or 1.0
        vmin, vmax, cmap = -lim, lim, "RdBu_r" if cmap == "viridis" else cmap
    im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if colorbar_label:
        cb.set_label(colorbar_label)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if xticklabels is not None and len(xticklabels) <= 80:
        ax.set_xticks(range(cols))
        ax.set_xticklabels([_short(str(t)) for t in xticklabels], rotation=90, fontsize=7)
    if yticklabels is not None and len(yticklabels) <= 80:
        ax.set_yticks(range(rows))
        ax.set_yticklabels([_short(str(t)) for t in yticklabels], fontsize=7)
    if annotate is None:
        annotate = rows * cols <= 150
    if annotate:
        lo = float(m.min()) if vmin is None else vmin
        hi = float(m.max()) if vmax is None else vmax
        mid = (lo + hi) / 2
        for i in range(rows):
            for j in range(cols):
                dark = abs(m[i, j] - mid) > 0.3 * (hi - lo) if center else m[i, j] < mid
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if dark else "black")
    return save(fig, path)


# ----- one function per tool ----------------------------------------------------------------------------
def plot_lens(result, out_dir: str | Path) -> list[Path]:
    """Top-1 probability per layer x position, annotated with the top-1 token."""
    plt = _plt()
    out_dir = Path(out_dir)
    probs = result.top_probs[..., 0].numpy()  # [entries, P]
    E, P = probs.shape
    fig, ax = plt.subplots(figsize=(min(3 + 1.3 * P, 24), min(1.5 + 0.32 * E, 16)))
    im = ax.imshow(probs, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).set_label("top-1 probability")
    for i in range(E):
        for j in range(P):
            ax.text(j, i, _short(result.top_tokens[i][j][0], 12), ha="center", va="center", fontsize=7,
                    color="white" if probs[i, j] > 0.5 else "black")
    ax.set_yticks(range(E))
    ax.set_yticklabels(result.labels, fontsize=7)
    ax.set_xticks(range(P))
    ax.set_xticklabels([f"{p}: {_short(result.input_tokens[p])}" for p in result.positions], rotation=45,
                       ha="right", fontsize=7)
    ax.set_title("logit lens: top prediction of each layer's residual stream")
    paths = [save(fig, out_dir / "logit_lens.png")]
    if result.target_probs is not None:
        fig, ax = plt.subplots(figsize=(7, 4))
        for j, p in enumerate(result.positions):
            ax.plot(range(E), result.target_probs[:, j].numpy(), marker="o", ms=3,
                    label=f"pos {p} -> {_short(str(result.target_ids[j]))}")
        ax.set_xticks(range(E))
        ax.set_xticklabels(result.labels, rotation=90, fontsize=7)
        ax.set_ylabel("probability of the actual next token")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
        ax.set_title("logit lens: next-token probability by layer")
        paths.append(save(fig, out_dir / "logit_lens_target.png"))
    return paths


def plot_attention(result, out_dir: str | Path, max_heads: int = 64) -> list[Path]:
    """Score heatmaps per kind, distance histograms per layer, and the patterns of every head."""
    plt = _plt()
    out_dir = Path(out_dir)
    L, H = result.mean_distance.shape
    heads = [f"H{h}" for h in range(H)]
    layers = [f"L{i}" for i in range(L)]
    paths = []
    n = len(result.scores)
    fig, axes = plt.subplots(1, n, figsize=(min(2.2 * n + 0.25 * H * n, 30), min(1.5 + 0.3 * L, 14)), squeeze=False)
    for ax, (name, s) in zip(axes[0], result.scores.items()):
        im = ax.imshow(s.numpy(), vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_title(name.replace("_", " "), fontsize=9)
        ax.set_xlabel("head")
        ax.set_yticks(range(L) if L <= 40 else [])
        ax.set_yticklabels(layers if L <= 40 else [], fontsize=6)
    fig.colorbar(im, ax=axes[0].tolist(), fraction=0.02)
    fig.suptitle("attention head scores")
    paths.append(save(fig, out_dir / "attention_scores.png"))

    fig, ax = plt.subplots(figsize=(8, 4.5))
    per_layer = result.histograms.mean(1)  # [L, D + 1]
    cmap = plt.get_cmap("viridis")
    for i in range(L):
        ax.plot(range(per_layer.shape[1]), per_layer[i].numpy(), color=cmap(i / max(L - 1, 1)), label=f"L{i}")
    ax.set_xlabel("query - key distance (tokens)")
    ax.set_ylabel("share of attention")
    ax.set_yscale("log")
    ax.set_title("attention distance per layer (mean over heads)")
    if L <= 12:
        ax.legend(fontsize=7)
    paths.append(save(fig, out_dir / "attention_distance.png"))

    paths.append(heatmap(result.mean_distance, out_dir / "attention_mean_distance.png",
                         "mean attention distance (tokens)", "head", "layer", heads, layers, cmap="magma"))

    n_show = min(L * H, max_heads)
    cols = min(H, 8) if H > 0 else 1
    grid_rows = (n_show + cols - 1) // cols
    fig, axes = plt.subplots(grid_rows, cols, figsize=(2 * cols, 2 * grid_rows), squeeze=False)
    for k in range(grid_rows * cols):
        ax = axes[k // cols][k % cols]
        ax.axis("off")
        if k < n_show:
            layer, h = k // H, k % H
            ax.imshow(result.patterns[layer, h].numpy(), cmap="Blues", vmin=0, vmax=1)
            ax.set_title(f"L{layer}H{h} {result.labels[layer][h]}", fontsize=7)
    fig.suptitle("attention patterns (first sequence)")
    paths.append(save(fig, out_dir / "attention_patterns.png"))
    return paths


def plot_induction(result, out_dir: str | Path) -> list[Path]:
    plt = _plt()
    out_dir = Path(out_dir)
    L, H = result.scores["induction"].shape
    heads, layers = [f"H{h}" for h in range(H)], [f"L{i}" for i in range(L)]
    paths = [heatmap(result.scores[name], out_dir / f"induction_{name}.png", f"{name.replace('_', ' ')} score",
                     "head", "layer", heads, layers, vmin=0, vmax=1)
             for name in ("induction", "prefix_matching", "previous_token", "duplicate_token")]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    loss = result.loss_per_position.numpy()
    ax.plot(range(len(loss)), loss, lw=1)
    o, n = result.offset, result.seq_len
    # position t predicts token t + 1: r_2..r_L of each repeat
    ax.axvspan(o, o + n - 2, color="tab:red", alpha=0.08, label=f"first repeat (mean {result.loss_first:.2f})")
    ax.axvspan(o + n, o + 2 * n - 2, color="tab:green", alpha=0.08, label=f"second repeat (mean {result.loss_second:.2f})")
    ax.set_xlabel("position (predicting the next token)")
    ax.set_ylabel("loss (nats)")
    ax.set_title("per-token loss on repeated random tokens")
    ax.legend(fontsize=8)
    paths.append(save(fig, out_dir / "induction_loss.png"))
    if result.patterns:
        fig, axes = plt.subplots(1, len(result.patterns), figsize=(4 * len(result.patterns), 4), squeeze=False)
        for ax, (name, p) in zip(axes[0], result.patterns.items()):
            ax.imshow(p.numpy(), cmap="Blues", vmin=0, vmax=1)
            ax.set_title(name)
            ax.set_xlabel("key")
            ax.set_ylabel("query")
        paths.append(save(fig, out_dir / "induction_patterns.png"))
    return paths


def plot_patching(result, out_dir: str | Path) -> list[Path]:
    out_dir = Path(out_dir)
    paths = []
    for comp, r in result.recovery.items():
        L = r.shape[0]
        if comp == "heads":
            x, xlabel = [f"H{h}" for h in range(r.shape[1])], "head"
        else:
            x, xlabel = [f"{i}:{t}" for i, t in enumerate(result.clean_tokens)], "position: clean token"
        paths.append(heatmap(r, out_dir / f"patching_{comp}.png",
                             f"activation patching ({comp}): recovery of {result.metric_name}", xlabel, "layer",
                             x, [f"L{i}" for i in range(L)], center=True, colorbar_label="recovery"))
    return paths


def plot_dla(result, out_dir: str | Path) -> list[Path]:
    plt = _plt()
    out_dir = Path(out_dir)
    L, H = result.per_head.shape
    target = result.answer_str + (f" - {result.wrong_str}" if result.wrong is not None else "")
    paths = [heatmap(result.per_head, out_dir / "dla_heads.png", f"direct logit attribution to {target!r} per head",
                     "head", "layer", [f"H{h}" for h in range(H)], [f"L{i}" for i in range(L)], center=True)]
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * L), 3.8))
    x = torch.arange(L).float()
    width = 0.4 if result.mlp is not None else 0.8
    ax.bar((x - width / 2) if result.mlp is not None else x, result.attn.numpy(), width, label="attention")
    if result.mlp is not None:
        ax.bar(x + width / 2, result.mlp.numpy(), width, label="MLP")
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xlabel("layer")
    ax.set_ylabel("direct logit contribution")
    ax.set_title(f"direct logit attribution per layer (model: {result.model_value:.2f})")
    ax.legend(fontsize=8)
    paths.append(save(fig, out_dir / "dla_layers.png"))
    return paths


def plot_probe(curve, out_dir: str | Path) -> list[Path]:
    plt = _plt()
    out_dir = Path(out_dir)
    fig, ax = plt.subplots(figsize=(7, 4))
    if curve.kind == "ridge":
        ax.plot(curve.layers, [s.r2 for s in curve.scores], marker="o", label="held-out R²")
        ax.plot(curve.layers, [s.r2_train for s in curve.scores], marker=".", ls="--", alpha=0.6, label="train R²")
        ax.set_ylabel("R²")
        ax.set_ylim(min(-0.1, min(s.r2 for s in curve.scores)), 1.02)
    else:
        ax.plot(curve.layers, [s.auc for s in curve.scores], marker="o", label="held-out AUC")
        ax.plot(curve.layers, [s.accuracy for s in curve.scores], marker="s", label="held-out accuracy")
        ax.plot(curve.layers, [s.chance for s in curve.scores], ls=":", color="gray", label="majority class")
        ax.set_ylim(0, 1.02)
    ax.set_xlabel("layer")
    ax.set_title(f"{curve.kind} probe for {curve.target} on {curve.hook}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return [save(fig, out_dir / f"probe_{curve.target}_{curve.hook.replace('.', '_').replace('{layer}', 'L')}.png")]
