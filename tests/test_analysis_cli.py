"""`interfere interpret <tool>` on a checkpoint trained here: tables, PNGs under the run's assets, --json."""

import json

import pytest

from toy_task import one_thread  # noqa: F401 (autouse fixture)

from interfere.cli.interpret import TOOLS, run
from interfere.errors import ConfigError


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A few steps of exp=induction_toy on a smaller model: a real run directory with a checkpoint."""
    from interfere.config import compose
    from interfere.train import train

    runs = tmp_path_factory.mktemp("runs")
    cfg = compose(["exp=induction_toy", f"runs_dir={runs}", "train.steps=3", "train.progress=false",
                   "train.audit=false", "model.d_model=32", "task.seq_len=24", "task.segment=[3,8]"])
    return runs, train(cfg)


EXTRA = {"probe": ["batch=8", "target=in_repeat"], "attention": ["batch=2"], "induction": ["batch=2"]}


@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_prints_one_json_object_and_writes_pngs(tool, toy_run, capsys):
    runs, run_dir = toy_run
    assert run([tool, f"run={run_dir.name}", f"runs_dir={runs}", "--json", *EXTRA.get(tool, [])]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    record = json.loads(out)
    assert record["tool"] == tool and record["model"] == run_dir.name and record["kind"] == "run"
    assert record["plots"] and all(p.endswith(".png") for p in record["plots"])
    plots_dir = run_dir / "assets" / "plots" / tool.replace("-", "_")
    assert sorted(str(p) for p in plots_dir.glob("*.png")) == sorted(record["plots"])
    assert isinstance(record["result"], dict) and record["result"]


def test_tables_and_options(toy_run, capsys):
    runs, run_dir = toy_run
    assert run(["logit-lens", f"runs_dir={runs}", "prompt=0,5,9,5", "positions=all", "k=2", "plots=false"]) == 0
    text = capsys.readouterr().out
    assert "logit lens at position 3" in text and "plot " not in text
    assert run(["patch", f"runs_dir={runs}", "clean=0,5,9,5", "corrupted=0,6,9,5", "answer=9", "wrong=4",
                "components=resid,heads", "--json", "plots=false"]) == 0
    result = json.loads(capsys.readouterr().out)["result"]
    assert set(result["recovery"]) == {"resid", "heads"} and result["position"] == 3


@pytest.mark.parametrize("argv, message", [
    (["lens"], "did you mean logit-lens"),
    (["induction", "run=a", "model=smollm2"], "one of run="),
    (["induction", "seqlen=5"], "did you mean seq_len"),
    (["attention", "--html"], "unknown option"),
    (["induction", "model=gpt5"], "unknown pretrained model"),
    (["induction", "seq_len=5000"], "seq_len"),
])
def test_usage_errors(argv, message, toy_run):
    with pytest.raises(ConfigError, match=message):
        run([*argv, f"runs_dir={toy_run[0]}"])
