"""`interfere explore life <tool>` on a tiny Life run trained by the real CLI (conftest.tiny_life_run)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from interfere.cli.explore import TOOLS
from interfere.cli.main import main

FAST = ["boards=3"]  # every tool on a few 6x6 boards


def explore(capsys, *words):
    code = main(["explore", "life", *words])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("tool", list(TOOLS))
def test_every_tool_prints_one_json_object_and_writes_its_files(tool, tiny_life_run, capsys):
    runs_dir, trained = tiny_life_run
    words = [tool, f"runs_dir={runs_dir}", "--json"] + ([] if tool in ("rule-vectors", "contrib") else FAST)
    words += ["video=true"] if tool == "attention" else []
    code, out, err = explore(capsys, *words)
    assert code == 0, err
    assert out.count("\n") == 1
    record = json.loads(out)
    run_dir = Path(trained["run_dir"]) if "run_dir" in trained else runs_dir / trained["run"]
    folder = Path(record["out"])
    assert folder.parent == run_dir.resolve() / "assets" / "explorations" and folder.name.endswith(f"_{tool}")
    assert sorted(record["files"]) == sorted(str(p) for p in folder.iterdir())
    assert any(f.endswith(".png") for f in record["files"])
    assert json.loads((folder / "summary.json").read_text())["result"] == record["result"]
    if tool == "attention":  # a frame per head (2 layers of 2)
        assert {Path(f).name for f in record["files"]} >= {"attention_heads.mp4", "attention_heads.gif"}
        import imageio

        assert len(imageio.mimread(folder / "attention_heads.gif")) == 4
    if tool == "hypotheses":
        verdicts = {v["id"]: v["verdict"] for v in record["result"]["verdicts"]}
        assert verdicts["H3"] == "not testable on this model"  # a Conway run
        text = (folder / "summary.md").read_text()
        assert all(f"## {h}: {v}" in text for h, v in verdicts.items()) and "needs >=" in text


def test_table_output_and_usage_errors(tiny_life_run, capsys):
    runs_dir, _ = tiny_life_run
    code, out, _ = explore(capsys, "contrib", f"runs_dir={runs_dir}", "head=L1H0", "query=2,3")
    assert code == 0 and "L1H0" in out and "file   " in out
    for words, message in ((["contrib", "head=2"], "L<layer>H<head>"), (["contrib", "head=L5H0"], "does not exist"),
                           (["attention", "query=9,9"], "off the 6x6 board"), (["probes", "board=3"], "did you mean boards"),
                           (["probes", "run=nope"], "no run or checkpoint")):
        code, _, err = explore(capsys, *words, f"runs_dir={runs_dir}")
        assert code == 2 and message in err and err.count("\n") == 1


def test_help_lists_every_tool_on_its_own_line():
    from interfere.explore.life import TOOLS as LIBRARY_TOOLS

    assert list(TOOLS) == list(LIBRARY_TOOLS)  # the CLI keeps its own lines so that --help imports no torch
    for argv in (["explore", "--help"], ["explore", "life", "--help"]):
        p = subprocess.run([sys.executable, "-m", "interfere", *argv], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0
        lines = p.stdout.splitlines()
        for tool, line in TOOLS.items():
            assert sum(1 for x in lines if x.split()[:1] == [tool] and line in x) == 1, (argv, tool)


@pytest.mark.slow
def test_rules_and_hypotheses_on_a_rule_general_run(tmp_path, capsys):
    """A few training steps with random rules and FiLM: H3 becomes testable and every bit gets its numbers."""
    from conftest import TINY_LIFE

    runs_dir = tmp_path / "runs"
    words = [w for w in TINY_LIFE if not w.startswith("train.steps")]
    assert main(["train", *words, "train.steps=20", "task.rules=random", "model.n_cond=18", f"runs_dir={runs_dir}",
                 "--json"]) == 0
    capsys.readouterr()
    code, out, err = explore(capsys, "rules", f"runs_dir={runs_dir}", "boards=4", "--json")
    assert code == 0, err
    result = json.loads(out)["result"]
    assert result["testable"] and len(result["bits"]) == 18
    assert all(0 <= b["stayed"] <= 1 for b in result["bits"] if b["stayed"] is not None)
    code, out, err = explore(capsys, "hypotheses", f"runs_dir={runs_dir}", "boards=4", "heads=false", "--json")
    assert code == 0, err
    h3 = next(v for v in json.loads(out)["result"]["verdicts"] if v["id"] == "H3")
    assert h3["verdict"] in ("supported", "not supported") and len(h3["criteria"]) == 4
