"""The README's two pictures, made by the tools they show: docs/screenshots/menu.png (the interactive menu, the
real program in tmux, its screen drawn as text) and docs/screenshots/report.png (a run's report.html in headless
Chromium). Needs tmux and chromium (Debian: apt-get install tmux chromium).

    python docs/screenshots.py                 trains a short life_smoke run in a temporary folder first
    python docs/screenshots.py runs/<run_id>   or shows that run
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "screenshots"
SHORT_RUN = ["exp=life_smoke", "train.steps=120", "train.progress=false", "device=cpu"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


def interfere(*words: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "interfere", *words], cwd=cwd, check=True)


def chromium() -> str:
    for name in ("chromium", "chromium-headless-shell", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    raise SystemExit("no chromium on PATH (Debian: apt-get install chromium)")


def report_png(run_dir: Path, out: Path) -> None:
    """The report as Chromium draws it, the first 1800 pixels of its 1280-pixel-wide page."""
    interfere("report", f"run={run_dir.resolve()}", cwd=run_dir.parent)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,1800",
                        f"--screenshot={out}", (run_dir / "report.html").resolve().as_uri()],
                       check=True, capture_output=True, timeout=180)


def menu_png(runs_parent: Path, out: Path) -> None:
    """`interfere` with no arguments in a 120x30 tmux terminal, its screen once the main menu is drawn."""
    socket = f"interfere-shots-{time.time_ns()}"
    tmux = ["tmux", "-L", socket]
    program = shlex.join([sys.executable, "-m", "interfere"])
    subprocess.run([*tmux, "new-session", "-d", "-s", "menu", "-x", "120", "-y", "30", "-c", str(runs_parent),
                    f"env TERM=xterm-256color {program}"], check=True)
    try:
        deadline, screen = time.monotonic() + 120, ""
        while "What now?" not in screen and time.monotonic() < deadline:
            time.sleep(0.5)
            screen = subprocess.run([*tmux, "capture-pane", "-p", "-t", "menu"], capture_output=True, text=True).stdout
        draw_text(screen.rstrip("\n"), out)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


def draw_text(text: str, out: Path) -> None:
    """A terminal's text as a PNG: light monospace on dark, one character cell per character."""
    import matplotlib
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSansMono.ttf"), 16)
    lines = text.splitlines() or [""]
    w, h = font.getbbox("M")[2], 22
    image = Image.new("RGB", (max(len(x) for x in lines) * w + 32, len(lines) * h + 32), (24, 24, 28))
    pen = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        pen.text((16, 16 + i * h), line, font=font, fill=(225, 225, 225))
    image.save(out)


def main(argv: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if argv:
            run_dir = Path(argv[0]).resolve()
        else:
            interfere("train", *SHORT_RUN, cwd=Path(tmp))
            run_dir = (Path(tmp) / "runs" / "latest").resolve()
        report_png(run_dir, OUT / "report.png")
        # The menu reads runs/ of its working folder: show it the run.
        where = Path(tmp) / "menu"
        shutil.copytree(run_dir, where / "runs" / run_dir.name, symlinks=True)
        (where / "runs" / "latest").symlink_to(run_dir.name)
        menu_png(where, OUT / "menu.png")
    print(f"wrote {OUT / 'report.png'} and {OUT / 'menu.png'}")


if __name__ == "__main__":
    main(sys.argv[1:])
