"""Rollout videos: model | truth | difference, one row per board, one frame per generation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from interfere.files import atomic_write

BACKGROUND = (24, 24, 28)
GRID = (48, 48, 56)
DEAD = (0, 0, 0)
ALIVE = (235, 235, 235)
AGREE_ALIVE = (90, 90, 96)  # the difference panel shows the true board dimmed ...
DIFFER = (230, 40, 40)  # ... and the cells the model gets wrong in red
PROGRESS = (120, 170, 240)
MARGIN = 8  # pixels between panels and around the frame
BAR = 3  # height of the progress bar (the step counter) at the bottom
LABEL = 14  # height of the column titles at the top
TITLES = ("model", "truth", "difference")
TITLE = (170, 170, 180)


def _panel(colors: np.ndarray, cell: int) -> np.ndarray:
    """[H, W, 3] cell colours -> [H*cell + 1, W*cell + 1, 3] pixels with a 1-px grid between cells."""
    H, W, _ = colors.shape
    big = colors.repeat(cell, 0).repeat(cell, 1)
    out = np.empty((H * cell + 1, W * cell + 1, 3), np.uint8)
    out[:] = GRID
    inner = (np.arange(H * cell) % cell != cell - 1)[:, None] & (np.arange(W * cell) % cell != cell - 1)[None, :]
    out[1:, 1:][inner] = big[inner]
    return out


def _colors(board: np.ndarray) -> np.ndarray:
    return np.where(board[..., None] != 0, np.array(ALIVE, np.uint8), np.array(DEAD, np.uint8))


def _diff_colors(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    c = np.where(true[..., None] != 0, np.array(AGREE_ALIVE, np.uint8), np.array(DEAD, np.uint8))
    return np.where((pred != true)[..., None], np.array(DIFFER, np.uint8), c)


def _titles(width: int, centres: list[int]) -> np.ndarray:
    """[LABEL, width, 3] strip with TITLES centred at the given x pixels (drawn once per video by matplotlib)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100
    fig = Figure(figsize=(width / dpi, LABEL / dpi), dpi=dpi, facecolor=np.array(BACKGROUND) / 255)
    for title, x in zip(TITLES, centres):
        fig.text(x / width, 0.5, title, ha="center", va="center", fontsize=8, color=np.array(TITLE) / 255)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:LABEL, :width, :3].copy()


def _round16(n: int) -> int:
    return -(-n // 16) * 16


def frames(model_boards, true_boards, cell: int | None = None) -> list[np.ndarray]:
    """model_boards, true_boards [N, S+1, H, W] (tensors or arrays) -> S+1 RGB frames [Hf, Wf, 3] uint8.

    Each cell is `cell` pixels (default: boards about 128 px across); the frame is padded so its sides are
    multiples of 16, which video codecs want.
    """
    pred = np.asarray(model_boards.cpu() if hasattr(model_boards, "cpu") else model_boards)
    true = np.asarray(true_boards.cpu() if hasattr(true_boards, "cpu") else true_boards)
    N, S1, H, W = true.shape
    cell = cell or max(3, 128 // max(H, W))
    ph, pw = H * cell + 1, W * cell + 1
    top = LABEL + MARGIN // 2
    height = _round16(top + N * (ph + MARGIN) + BAR + MARGIN // 2)
    width = _round16(MARGIN + 3 * (pw + MARGIN))
    header = _titles(width, [MARGIN + j * (pw + MARGIN) + pw // 2 for j in range(3)])
    out = []
    for s in range(S1):
        img = np.empty((height, width, 3), np.uint8)
        img[:] = BACKGROUND
        img[:LABEL] = header
        for n in range(N):
            y = top + n * (ph + MARGIN)
            panels = (_colors(pred[n, s]), _colors(true[n, s]), _diff_colors(pred[n, s], true[n, s]))
            for j, colors in enumerate(panels):
                x = MARGIN + j * (pw + MARGIN)
                img[y:y + ph, x:x + pw] = _panel(colors, cell)
        # The step counter: a bar that grows one notch per generation (also keeps GIF frames distinct).
        bar = round((width - 2 * MARGIN) * (s + 1) / S1)
        img[height - BAR - MARGIN // 2:height - MARGIN // 2, MARGIN:MARGIN + bar] = PROGRESS
        out.append(img)
    return out


def write_video(frames: list[np.ndarray], path: str | Path, fps: int = 8) -> Path:
    """H.264 MP4 through imageio's ffmpeg binary; written to a temp file, then renamed into place."""
    import imageio

    with atomic_write(path) as tmp:
        with imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=8,
                                pixelformat="yuv420p", macro_block_size=16) as w:
            for f in frames:
                w.append_data(f)
    return Path(path)


def write_gif(frames: list[np.ndarray], path: str | Path, fps: int = 8) -> Path:
    """Looping GIF through imageio (pillow); atomic like write_video."""
    import imageio

    with atomic_write(path) as tmp:
        imageio.mimsave(tmp, frames, format="GIF", duration=1000 / fps, loop=0)
    return Path(path)
