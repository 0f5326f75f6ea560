"""The explorations' pictures: one function per tool, each taking its result and an output folder and returning
the PNG (MP4, GIF) paths it wrote. matplotlib's object API (no pyplot state); files written atomically by
interfere.analysis.plots.save, videos by the Life task's own writers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from interfere.analysis.common import head_label
from interfere.analysis.plots import heatmap, save
from interfere.explore.life import roles, verdicts

PROBE_LABELS = {"count": "count R²", "count_class": "count 9-way accuracy", "next": "next state AUC",
                "state": "current state AUC", "noise": "noise R² (control)"}


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _grid(fig, rows: int, cols: int):
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return axes


def _box(ax, row: float, col: float, half: float = 1.5, color: str = "red"):
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((col - half, row - half), 2 * half, 2 * half, fill=False, ec=color, lw=1))


# ----- H1 -------------------------------------------------------------------------------------------------
def attention(maps, out: Path, query: tuple[int, int] | None = None, video: bool = False) -> list[Path]:
    L, nh, H, W = maps.centred.shape
    query = query or (H // 2, W // 2)
    paths = [_head_grid(maps.centred, out / "attention_centred.png", (H // 2, W // 2), maps.neighbourhood_mass,
                        "average attention on board t around the query cell (centre); box: the 3x3 neighbourhood"),
             _head_grid(maps.first[:, :, query[0] * W + query[1]], out / "attention_query.png", query, None,
                        f"attention of query cell {query} on board t (first board)")]
    layer, head = maps.best_head()
    paths.append(_mosaic(maps.first[layer, head], out / f"attention_mosaic_{head_label(layer, head)}.png",
                         f"{head_label(layer, head)}: every query cell's attention on board t, placed at the cell"))
    paths.append(_mass_bars(maps, out / "attention_mass.png"))
    if video:
        paths += _sweep(maps, query, out / "attention_heads")
    return paths


def _head_grid(maps: torch.Tensor, path: Path, mark: tuple[int, int], mass, title: str) -> Path:
    """One panel per head, each coloured from 0 to its own largest value (named in its title)."""
    L, nh = maps.shape[:2]
    fig = _figure(2.1 * nh, 2.2 * L + 0.4)
    axes = _grid(fig, L, nh)
    for layer in range(L):
        for h in range(nh):
            ax = axes[layer][h]
            ax.imshow(maps[layer, h].numpy(), cmap="viridis", vmin=0)
            _box(ax, *mark)
            extra = f" 3x3 {float(mass[layer, h]):.2f}" if mass is not None else ""
            ax.set_title(f"{head_label(layer, h)}{extra} (max {float(maps[layer, h].max()):.2f})", fontsize=7)
    fig.suptitle(title + "; each panel scaled to its max", fontsize=9)
    return save(fig, path)


def _mosaic(maps: torch.Tensor, path: Path, title: str) -> Path:
    """[HW, H, W] maps tiled at their query cells: an (H*H) x (W*W) picture with a line between tiles."""
    hw, H, W = maps.shape
    tiles = maps.reshape(H, W, H, W).permute(0, 2, 1, 3).reshape(H * H, W * W).numpy()
    fig = _figure(7, 7)
    ax = fig.add_subplot()
    ax.imshow(tiles, cmap="magma", vmin=0, interpolation="nearest")
    for i in range(1, H):
        ax.axhline(i * H - 0.5, color="white", lw=0.2)
    for j in range(1, W):
        ax.axvline(j * W - 0.5, color="white", lw=0.2)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    return save(fig, path)


def _mass_bars(maps, path: Path) -> Path:
    heads = maps.heads()
    fig = _figure(max(5, 0.5 * len(heads) + 2), 3.4)
    ax = fig.add_subplot()
    x = np.arange(len(heads))
    ax.bar(x - 0.2, [h["neighbourhood_mass"] for h in heads], 0.4, label="3x3 neighbourhood (board t)")
    ax.bar(x + 0.2, [h["rule_share"] for h in heads], 0.4, label="18 rule tokens")
    ax.axhline(maps.uniform_neighbourhood, color="C0", ls=":", label=f"uniform, 3x3 ({maps.uniform_neighbourhood:.3f})")
    ax.axhline(maps.uniform_rule, color="C1", ls=":", label=f"uniform, rule ({maps.uniform_rule:.3f})")
    ax.axhline(verdicts.H1_MASS, color="gray", ls="--", lw=0.8, label=f"H1 threshold ({verdicts.H1_MASS})")
    ax.set_xticks(x, [h["name"] for h in heads], fontsize=7, rotation=90 if len(heads) > 16 else 0)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of the query cell's attention")
    ax.legend(fontsize=7)
    ax.set_title("where query cells attend (softmax over the keys they see)", fontsize=9)
    return save(fig, path)


def _sweep(maps, query: tuple[int, int], base: Path) -> list[Path]:
    """A video with one frame per head, layer by layer: its average stencil and query cell `query`'s attention."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from interfere.tasks.life.render import write_gif, write_video

    L, nh, H, W = maps.centred.shape
    frames = []
    for layer in range(L):
        for head in range(nh):
            fig = _figure(6.4, 3.4)
            a, b = _grid(fig, 1, 2)[0]
            a.imshow(maps.centred[layer, head].numpy(), cmap="viridis", vmin=0)
            _box(a, H // 2, W // 2)
            mass = float(maps.neighbourhood_mass[layer, head])
            a.set_title(f"{head_label(layer, head)}: average around the query cell (3x3 mass {mass:.2f})", fontsize=8)
            b.imshow(maps.first[layer, head, query[0] * W + query[1]].numpy(), cmap="magma", vmin=0)
            _box(b, *query, half=0.5, color="cyan")
            b.set_title(f"query cell {query}, first board", fontsize=8)
            canvas = FigureCanvasAgg(fig)
            canvas.draw()
            frames.append(np.asarray(canvas.buffer_rgba())[..., :3].copy())
    pad = [(0, -s % 16) for s in frames[0].shape[:2]] + [(0, 0)]  # codecs want sides in multiples of 16
    frames = [np.pad(f, pad, constant_values=255) for f in frames]
    return [write_video(frames, base.with_suffix(".mp4"), fps=2), write_gif(frames, base.with_suffix(".gif"), fps=2)]


# ----- H2 and H4 ------------------------------------------------------------------------------------------
def probes(result, out: Path) -> list[Path]:
    fig = _figure(6.4, 3.8)
    ax = fig.add_subplot()
    points = list(range(len(result.hooks)))
    for target in result.curves:
        ax.plot(points, result.values(target), marker="o", label=PROBE_LABELS[target],
                ls=":" if target == "noise" else "-")
    ax.axhline(verdicts.H2_COUNT_R2, color="gray", ls="--", lw=0.8)
    ax.set_xticks(points, ["embed"] + [f"after L{p - 1}" for p in points[1:]])
    ax.set_ylim(min(-0.1, min(result.values("noise"))), 1.02)
    ax.set_xlabel("residual stream point")
    ax.set_ylabel("held-out score (boards never fitted)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax.set_title("linear probes at the query slot's cells", fontsize=9)
    return [save(fig, out / "probes.png")]


def layers(r, out: Path) -> list[Path]:
    fig = _figure(9, 3.6)
    a, b = fig.subplots(1, 2)
    blocks = list(range(len(r.locality)))
    a.bar(blocks, r.locality, color="C0", label="mean 3x3 mass of the block's heads")
    a.axhline(r.uniform_locality, color="C0", ls=":", label="uniform")
    a.set_xticks(blocks, [f"L{layer}" for layer in blocks])
    a.set_ylim(0, 1)
    a.set_xlabel("block")
    a.set_title("locality of attention", fontsize=9)
    a.legend(fontsize=7)
    d = a.twinx()
    d.plot(blocks, r.mean_distance, color="C3", marker="o", label="mean distance (cells)")
    d.set_ylabel("mean torus distance", color="C3")
    points = list(range(len(r.count_r2)))
    b.plot(points, r.count_r2, marker="o", label="count R²")
    b.plot(points, r.next_auc, marker="s", label="next state AUC")
    b.plot(points, r.state_auc, marker=".", ls=":", label="current state AUC")
    b.axhline(roles.COUNT_R2, color="C0", ls="--", lw=0.7)
    b.axhline(roles.NEXT_AUC, color="C1", ls="--", lw=0.7)
    b.set_xticks(points, ["embed"] + [f"after L{p - 1}" for p in points[1:]], fontsize=7)
    b.set_ylim(-0.05, 1.02)
    b.set_title(f"probes: count first at point {r.gather_point}, next state at {r.classify_point}", fontsize=9)
    b.legend(fontsize=7)
    return [save(fig, out / "layers.png")]


# ----- H3 -------------------------------------------------------------------------------------------------
def rules(maps, flips, out: Path) -> list[Path]:
    L, nh = maps.rule_share.shape
    paths = [heatmap(maps.rule_share, out / "rules_attention.png",
                     f"share of query attention on the 18 rule tokens (uniform {maps.uniform_rule:.3f})", "head",
                     "layer", [f"H{h}" for h in range(nh)], [f"L{layer}" for layer in range(L)], vmin=0, vmax=1)]
    if not flips.testable:
        return paths
    fig = _figure(9, 3.6)
    ax = fig.add_subplot()
    x = np.arange(len(flips.bits))
    bars = (("changed", "must-change cells that change"), ("stayed", "must-stay cells that stay"),
            ("token_only", "change, token flipped only"), ("cond_only", "change, FiLM input only"))
    for k, (key, label) in enumerate(bars):
        vals = [np.nan if getattr(b, key) is None else getattr(b, key) for b in flips.bits]
        ax.bar(x + (k - 1.5) * 0.2, vals, 0.2, label=label)
    ax.set_xticks(x, [f"{b.bit}\n{b.must_change}" for b in flips.bits], fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("flipped bit (cells that must change)")
    ax.legend(fontsize=7, ncols=2)
    ax.set_title("flipping one rule bit: the model against the simulator", fontsize=9)
    paths.append(save(fig, out / "rules_flips.png"))
    carried = [b for b in flips.bits if b.carry is not None]
    if carried:
        grid = torch.stack([b.carry.flatten() for b in carried])
        paths.append(heatmap(grid, out / "rules_carry.png",
                             "share of must-change cells a head's output alone flips (patched from the flipped run)",
                             "head", "flipped bit", [head_label(layer, h) for layer in range(L) for h in range(nh)],
                             [b.bit for b in carried], vmin=0, vmax=1))
    return paths


# ----- F5 -------------------------------------------------------------------------------------------------
def embed(pca, out: Path) -> list[Path]:
    P = len(pca.points)
    fig = _figure(3.2 * P + 1, 6)
    axes = fig.subplots(2, P, squeeze=False)
    for j, p in enumerate(pca.points):
        xy = pca.coords[j].numpy()
        for i, (values, cmap, name) in enumerate(((pca.counts, "viridis", "neighbour count"),
                                                  (pca.next, "coolwarm", "next state"))):
            ax = axes[i][j]
            sc = ax.scatter(xy[:, 0], xy[:, 1], c=values.numpy(), cmap=cmap, s=3, alpha=0.7)
            ax.set_title(f"point {p} ({pca.explained[j][0]:.2f}+{pca.explained[j][1]:.2f} var)", fontsize=8)
            if j == P - 1:
                fig.colorbar(sc, ax=ax, label=name)
    fig.suptitle("PCA of the residual stream at the query cells (top: count, bottom: next state)", fontsize=9)
    return [save(fig, out / "embed_pca.png")]


def contrib(c, out: Path) -> list[Path]:
    fig = _figure(12, 4)
    a, b, k = fig.subplots(1, 3)
    H, W = c.board.shape
    a.imshow(c.board.numpy(), cmap="Greys", vmin=0, vmax=1)
    a.set_title("board t", fontsize=9)
    m = c.per_query.numpy()
    lim = float(np.abs(m).max()) or 1.0
    im = b.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim)
    gy, gx = np.gradient(m)
    yy, xx = np.mgrid[0:H, 0:W]
    b.quiver(xx, yy, gx, -gy, color="black", alpha=0.6)
    fig.colorbar(im, ax=b, fraction=0.046, label="alive - dead logit (direct)")
    b.set_title(f"{head_label(c.layer, c.head)}: direct contribution per query cell, and its gradient", fontsize=9)
    m = c.per_key.numpy()
    lim = float(np.abs(m).max()) or 1.0
    im = k.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim)
    _box(k, *c.query, half=0.5, color="black")
    fig.colorbar(im, ax=k, fraction=0.046)
    k.set_title(f"attention x OV per key cell, for query cell {tuple(c.query)}", fontsize=9)
    for ax in (a, b, k):
        ax.set_xticks([])
        ax.set_yticks([])
    return [save(fig, out / f"contrib_{head_label(c.layer, c.head)}.png")]


def rule_vectors(v, out: Path) -> list[Path]:
    paths = [heatmap(v.cosine, out / "rule_vectors_cosine.png",
                     "cosine of the rule-bit vectors W_E[bit=1] - W_E[bit=0]", "bit", "bit", v.names, v.names,
                     center=True, annotate=False)]
    fig = _figure(6, 5.5)
    ax = fig.add_subplot()
    xy = v.pca.numpy()
    for i, name in enumerate(v.names):
        (x0, y0), (x1, y1) = xy[2 * i], xy[2 * i + 1]
        color = "C0" if name.startswith("B") else "C3"
        ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="->", color=color, lw=0.8))
        ax.text(x1, y1, name, fontsize=7, color=color)
    ax.scatter(xy[:, 0], xy[:, 1], s=6, c=["gray", "black"] * len(v.names))
    ax.set_title(f"rule-token embeddings, PCA ({v.explained[0]:.2f}+{v.explained[1]:.2f} var): arrows bit 0 -> 1",
                 fontsize=9)
    paths.append(save(fig, out / "rule_vectors_pca.png"))
    if v.film_cosine is not None:
        paths.append(heatmap(v.film_cosine, out / "rule_vectors_film_cosine.png",
                             "cosine of the first block's FiLM columns per rule bit", "bit", "bit", v.names, v.names,
                             center=True, annotate=False))
    return paths
