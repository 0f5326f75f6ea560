"""The HTML report of a run: sections for what the run directory holds, numbers equal to the files', one
self-contained page (no URL), `interfere report`, training writing it, and the page in a real browser."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from interfere.formatting import fmt
from interfere.report import SECTIONS, build, register, render, write_report
from interfere.report.sections import _over_k

NETWORK_URL = re.compile(r"(?i)\b(?:https?|wss?|ftp)://")


def _run_dir(tmp_path: Path) -> Path:
    """A run directory with nothing but its config."""
    d = tmp_path / "toy_20260101-000000"
    (d / "assets").mkdir(parents=True)
    cfg = {"name": "toy", "seed": 0, "device": "cpu", "task": {"name": "life", "board": [4, 4], "rules": "B3/S23"},
           "model": {"d_model": 16, "n_layers": 1, "n_heads": 2, "positional_embedding_type": "rope2d"},
           "train": {"steps": 4, "dtype": "fp32"}}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    return d


def _keys(run_dir) -> list[str]:
    return [s["key"] for s in build(run_dir)]


def _blocks(run_dir, key: str) -> list:
    return next(s["blocks"] for s in build(run_dir) if s["key"] == key)


def _write_gif(path: Path) -> bytes:
    import imageio
    import numpy as np

    frames = [np.full((8, 8, 3), v, dtype=np.uint8) for v in (0, 255)]
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, frames, format="GIF", duration=100, loop=0)
    return path.read_bytes()


# ----- sections for what exists, numbers as in the files ---------------------------------------------------
def test_sections_appear_for_what_the_run_holds(tmp_path):
    d = _run_dir(tmp_path)
    assert _keys(d) == ["run"]
    (d / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0 / s, "lr": 0.1}) + "\n"
                                             for s in (1, 2, 3)))
    assert _keys(d) == ["run", "training"]
    (d / "calibration.json").write_text(json.dumps({"tokens_per_s": 1234.5, "s_per_step": 0.1}))
    (d / "eval.json").write_text(json.dumps({"step": 3, "accuracy": 0.5}))
    _write_gif(d / "assets" / "rollouts" / "step_000003.gif")
    (d / "assets" / "samples").mkdir()
    (d / "assets" / "samples" / "step_000003.txt").write_text("To be")
    _write_gif(d / "assets" / "plots" / "attention" / "patterns.gif")
    (d / "assets" / "explorations" / "20260101-000000").mkdir(parents=True)
    (d / "assets" / "explorations" / "20260101-000000" / "summary.json").write_text(json.dumps({"verdict": "x"}))
    assert _keys(d) == ["run", "training", "throughput", "evaluation", "rollouts", "samples", "analyses",
                        "explorations"]
    (d / "assets" / "lens").mkdir()  # a tool without a section of its own yet: its files still show
    (d / "assets" / "lens" / "eval.json").write_text(json.dumps({"kl": 0.25}))
    (d / "assets" / ".half-written.tmp").write_text("")  # temporaries are never shown
    assert _keys(d)[-1] == "files"
    (table,) = _blocks(d, "files")
    assert table.caption == "assets/lens/eval.json" and table.rows == [["kl", "0.25"]]


def test_training_and_evaluation_tables_hold_the_files_numbers(tmp_path):
    d = _run_dir(tmp_path)
    losses = [4.0, 2.5, 3.0, 1.25]
    lrs = [0.001, 0.003, 0.002, 0.0005]
    (d / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": i + 1, "loss": x, "lr": lr}) + "\n" for i, (x, lr) in enumerate(zip(losses, lrs)))
        + '{"step": 5, "loss": 9.\n')  # a line cut short by a crash is skipped
    table = _blocks(d, "training")[-1]
    assert table.columns == ["metric", "first", "last", "min", "max"]
    rows = {r[0]: r[1:] for r in table.rows}
    assert rows["loss"] == [fmt(losses[0]), fmt(losses[-1]), fmt(min(losses)), fmt(max(losses))]
    assert rows["lr"] == [fmt(lrs[0]), fmt(lrs[-1]), fmt(min(lrs)), fmt(max(lrs))]

    final = {"step": 4, "cell_accuracy": 0.987654321, "board_accuracy": 0.5, "rule": "B3/S23"}
    (d / "eval.json").write_text(json.dumps(final))
    evaluation = _blocks(d, "evaluation")[0]
    assert evaluation.rows == [[k, fmt(v)] for k, v in final.items()]


def test_a_metric_at_k_becomes_a_curve_in_numeric_order():
    metrics = {f"rollout_divergence_k{k}": k / 100 for k in (10, 2, 1, 9, 11)} | {"board_accuracy_k": 1.0, "x_k3": 0.5}
    assert _over_k(metrics) == {"rollout_divergence": [(1, 0.01), (2, 0.02), (9, 0.09), (10, 0.1), (11, 0.11)]}


def test_figures_are_inline_pngs_and_gifs_byte_for_byte(tmp_path):
    from PIL import Image

    d = _run_dir(tmp_path)
    (d / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in (1, 2, 3)))
    gif = _write_gif(d / "assets" / "rollouts" / "step_000003.gif")
    (d / "assets" / "rollouts" / "step_000003.mp4").write_bytes(b"\0" * 16)
    (loss_plot, _table) = _blocks(d, "training")
    head, data = loss_plot.src.split(",", 1)
    assert head == "data:image/png;base64"
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    assert image.format == "PNG" and image.width > 300 and image.height > 200
    rollout, links = _blocks(d, "rollouts")
    assert rollout.src == "data:image/gif;base64," + base64.b64encode(gif).decode()
    assert links.items == [("assets/rollouts/step_000003.mp4", "assets/rollouts/step_000003.mp4")]


def test_the_page_is_escaped_and_names_no_url(tmp_path):
    d = _run_dir(tmp_path)
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    cfg["name"] = "<script>alert(1)</script>"
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    html = render(d)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not NETWORK_URL.search(html)


def test_a_failing_section_shows_its_error_and_the_rest_still_renders(tmp_path):
    @register("broken", "Broken", order=15)
    def broken(run):
        raise ValueError("no good\nat all")

    try:
        sections = {s["key"]: s for s in build(_run_dir(tmp_path))}
    finally:
        SECTIONS.pop("broken")
    assert sections["broken"]["error"] == "ValueError: no good at all"
    assert sections["run"]["blocks"] and sections["run"]["error"] is None


def test_write_report_is_atomic_and_refuses_a_non_run(tmp_path):
    from interfere.errors import ConfigError

    d = _run_dir(tmp_path)
    path = write_report(d)
    assert path == d / "report.html" and path.read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in d.iterdir()) == ["assets", "config.yaml", "report.html"]  # no temporary left
    with pytest.raises(ConfigError, match="not a run directory"):
        write_report(tmp_path)


# ----- the command line, and training writing the report ----------------------------------------------------
def test_training_writes_the_report(tiny_life_run):
    runs_dir, out = tiny_life_run
    report = Path(out["report"])
    assert report == Path(out["run_dir"]) / "report.html" and report.is_file()
    html = report.read_text()
    for key in ("run", "training", "throughput", "evaluation", "rollouts"):
        assert f'id="section-{key}"' in html


def test_report_command_json(tiny_life_run, capsys):
    from interfere.cli.main import main

    runs_dir, out = tiny_life_run
    assert main(["report", f"run={out['run']}", f"runs_dir={runs_dir}", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["run"] == out["run"] and Path(record["report"]) == Path(out["run_dir"]) / "report.html"
    assert {"run", "training", "throughput", "evaluation", "rollouts", "analyses"} <= set(record["sections"])
    assert main(["report", f"runs_dir={runs_dir}", "--json"]) == 0  # runs/latest
    assert json.loads(capsys.readouterr().out)["run"] == out["run"]


def test_report_errors_are_one_line(tmp_path, capsys):
    from interfere.cli.main import main

    assert main(["report", f"runs_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train one first" in err
    assert main(["report", "runz=x"]) == 2
    assert "did you mean run=x" in capsys.readouterr().err


def test_a_report_that_cannot_be_written_is_one_warning(tmp_path, capsys):
    from interfere.cli.train import _write_report

    assert _write_report(tmp_path) is None  # not a run directory
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("interfere: warning: could not write the report")


def test_resolve_run_forms(tiny_life_run):
    from interfere.errors import CheckpointError
    from interfere.train.runs import resolve_run

    runs_dir, out = tiny_life_run
    run_dir = Path(out["run_dir"]).resolve()
    ckpt = run_dir / "checkpoints" / "step_3"
    for form in (None, out["run"], str(run_dir), run_dir / "checkpoints", ckpt, ckpt / "model.safetensors"):
        assert resolve_run(form, runs_dir) == run_dir, form
    with pytest.raises(CheckpointError, match="interfere runs"):
        resolve_run("nope", runs_dir)


# ----- in a real browser ----------------------------------------------------------------------------------
def _chromium() -> str | None:
    for name in ("chromium", "chromium-headless-shell", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


class _Page(HTMLParser):
    """Sections, figures and every src/href of a DOM."""

    def __init__(self):
        super().__init__()
        self.sections, self.figures, self.images, self.links = [], [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a.get("data-section"))
        if tag == "figure":
            self.figures.append(a.get("data-figure"))
        if tag == "img":
            self.images.append(a.get("src", ""))
        if "href" in a:
            self.links.append(a["href"])


@pytest.mark.skipif(_chromium() is None, reason="no chromium binary on PATH (Debian: apt-get install chromium; "
                                                 "`make test` installs it where apt is available)")
def test_the_report_renders_in_headless_chromium(tiny_life_run, tmp_path):
    from PIL import Image, ImageStat

    from interfere.cli.main import main

    runs_dir, out = tiny_life_run
    run_dir = tmp_path / out["run"]
    shutil.copytree(out["run_dir"], run_dir, symlinks=True)
    exploration = run_dir / "assets" / "explorations" / "20260101-000000"
    exploration.mkdir(parents=True)
    (exploration / "summary.json").write_text(json.dumps({"hypotheses": [{"id": "H1", "verdict": "supported"}]}))
    assert main(["report", f"run={run_dir}"]) == 0
    report = run_dir / "report.html"
    html = report.read_text()
    assert not NETWORK_URL.search(html)

    chrome = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
              f"--user-data-dir={tmp_path / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND",
              "--window-size=1280,2400"]
    shot = tmp_path / "report.png"
    subprocess.run([*chrome, f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=120, check=True)
    dom = subprocess.run([*chrome, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120,
                         check=True).stdout

    gray = Image.open(shot).convert("L")
    assert gray.size == (1280, 2400)
    assert ImageStat.Stat(gray).stddev[0] > 20  # not a blank page
    assert sum(gray.histogram()[:200]) > 0.02 * gray.width * gray.height  # ink on at least 2% of it

    page = _Page()
    page.feed(dom)
    expected = build(run_dir)
    assert page.sections == [s["key"] for s in expected]
    assert {"run", "training", "throughput", "evaluation", "rollouts", "analyses", "explorations"} <= set(page.sections)
    figures = [b.name for s in expected for b in s["blocks"] if b.kind == "figure"]
    assert page.figures == figures and len(figures) >= 8
    assert len(page.images) == len(figures) and all(src.startswith("data:image/") for src in page.images)
    assert all(h.startswith("#section-") or not re.match(r"^[a-z]+:|//", h) for h in page.links)  # local only
    assert "supported" in dom and "H1" in dom
