"""The `interfere` command line: instant help, one-line config errors (exit 2), train -> eval -> runs end to end.

The CLI runs in a subprocess (`sys.executable -m interfere`) so that exit codes, stdout and stderr are the
real ones and the venv's interpreter is used.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

TINY_TRAIN = [
    # life_smoke shrunk to seconds: 6x6 boards (rope2d period follows the board), 3 steps of 4 boards,
    # one board rendered for 2 frames at step 1 and at the end; the leakage audit has its own tests.
    "exp=life_smoke", "train.steps=3", "task.board=[6,6]", "model.rope_period=6", "model.d_model=32",
    "train.batch_size=4", "train.warmup_steps=1", "train.log_every=1", "train.artifacts_every=100",
    "train.progress=false", "train.audit=false", "task.eval.samples=16", "task.render.boards=1",
    "task.render.steps=2", "device=cpu",
]


def cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "interfere", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def one_line_error(p: subprocess.CompletedProcess) -> str:
    """The CLI's contract for a user error: exit status 2, exactly one line on stderr, no traceback."""
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr
    assert lines[0].startswith("interfere: error: ")
    return lines[0]


# ----- help ------------------------------------------------------------------------------------------
def test_help_lists_commands_and_imports_nothing_heavy():
    code = (
        "import sys, io, contextlib, json\n"
        "from interfere.cli.main import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    rc = main(['--help'])\n"
        "heavy = [m for m in ('torch', 'transformer_lens', 'hydra', 'omegaconf', 'numpy', 'rich') if m in sys.modules]\n"
        "print(json.dumps({'rc': rc, 'help': out.getvalue(), 'heavy': heavy}))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert result["rc"] == 0
    assert result["heavy"] == []
    for command in ("train", "eval", "runs"):
        assert f"    {command} " in result["help"]


def test_help_and_version_via_the_module():
    p = cli("--help")
    assert p.returncode == 0 and "train" in p.stdout and "eval" in p.stdout
    p = cli()  # no arguments and no terminal (piped): the help; on a terminal the menus open
    assert p.returncode == 0 and "usage: interfere" in p.stdout
    import interfere

    p = cli("--version")
    assert p.returncode == 0 and p.stdout.strip() == f"interfere {interfere.__version__}"
    p = cli("train", "--help")
    assert p.returncode == 0 and "life_smoke" in p.stdout  # lists the experiments


# ----- composition -----------------------------------------------------------------------------------
def test_compose_defaults_exp_and_inherited_exp():
    from interfere.config import compose, experiments

    assert {"life_smoke", "life16", "life32", "life32_t3"} <= set(experiments())
    base = compose([])
    assert base.name == "default" and base.model.d_model == 128 and base.train.steps is None
    smoke = compose(["exp=life_smoke", "train.steps=7"])
    assert smoke.name == "life_smoke" and smoke.model.d_model == 64 and smoke.train.steps == 7
    assert smoke.train.batch_size == 16 and smoke.task.eval.samples == 256
    t3 = compose(["exp=life32_t3"])  # life32_t3.yaml has `defaults: [life32]`
    assert t3.name == "life32_t3"
    assert t3.model.d_model == 128 and t3.task.board == [32, 32] and t3.task.rules == "random"  # from life32
    assert t3.task.horizons == 3 and t3.task.scheduled_sampling.max_prob == 0.5  # its own
    added = compose(["+train.stepz=5"])
    assert added.train.stepz == 5


def test_cfg_prints_the_composed_config():
    p = cli("train", "exp=life32_t3", "train.lr=0.01", "--cfg")
    assert p.returncode == 0, p.stderr
    cfg = yaml.safe_load(p.stdout)
    assert cfg["name"] == "life32_t3" and cfg["task"]["horizons"] == 3 and cfg["train"]["lr"] == 0.01


# ----- one-line errors ---------------------------------------------------------------------------------
def test_unknown_key_suggests_the_closest_and_plus():
    line = one_line_error(cli("train", "train.stepz=5"))
    assert "train.stepz" in line and "train.steps" in line and "+train.stepz=5" in line


def test_unknown_experiment_names_the_option_and_the_choices():
    line = one_line_error(cli("train", "exp=nope"))
    assert "exp=nope" in line and "life_smoke" in line


def test_wrong_value_type_names_the_key():
    line = one_line_error(cli("train", "train.batch_size=abc"))
    assert "train.batch_size" in line and "integer" in line


def test_a_nullable_key_set_by_an_experiment_can_be_nulled():
    from interfere.config import compose

    cfg = compose(["exp=shakespeare", "train.tokens=null", "train.steps=5"])
    assert cfg.train.tokens is None and cfg.train.steps == 5
    assert compose(["exp=life_smoke", "train.steps=null", "train.tokens=2M"]).train.tokens == "2M"
    line = one_line_error(cli("train", "exp=shakespeare", "train.batch_size=null"))
    assert "train.batch_size must be an integer, not None" in line


def test_bare_experiment_name_suggests_exp():
    line = one_line_error(cli("train", "life_smoke"))
    assert "exp=life_smoke" in line


def test_eval_rejects_unknown_words_and_missing_runs(tmp_path):
    line = one_line_error(cli("eval", "runz=x"))
    assert "run=" in line
    line = one_line_error(cli("eval", f"runs_dir={tmp_path}"))  # nothing trained there
    assert str(tmp_path) in line


def test_main_returns_exit_codes_in_process(capsys):
    from interfere.cli.main import main

    assert main(["--help"]) == 0
    assert main(["train", "train.stepz=5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.steps" in err


def test_impossible_model_is_a_one_line_error(tmp_path):
    line = one_line_error(cli("train", "train.steps=1", "model.d_model=130", "model.n_heads=4", "device=cpu",
                              f"runs_dir={tmp_path / 'runs'}"))
    assert "d_model" in line and "n_heads" in line
    line = one_line_error(cli("train", "exp=life_smoke", "task.board=[24,24]", "model.rope_period=24", "model.n_ctx=532",
                              "device=cpu", f"runs_dir={tmp_path / 'runs'}"))
    assert "model.n_ctx=532 is shorter than the task's sequences (1172 tokens)" in line and "set model.n_ctx=1172" in line
    assert not any((tmp_path / "runs").glob("*_*"))  # no run directory left behind


# ----- end to end --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run: (runs_dir, train's JSON)."""
    runs_dir = tmp_path_factory.mktemp("cli") / "runs"
    p = cli("train", *TINY_TRAIN, f"runs_dir={runs_dir}", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    return runs_dir, json.loads(p.stdout)  # stdout holds the JSON object and nothing else


def test_train_writes_a_run_with_a_video(trained):
    runs_dir, out = trained
    run_dir = Path(out["run_dir"])
    assert run_dir.parent == runs_dir and run_dir.name == out["run"] and out["run"].startswith("life_smoke_")
    assert (run_dir / "config.yaml").is_file() and (run_dir / "metrics.jsonl").is_file()
    assert (runs_dir / "latest").resolve() == run_dir.resolve()
    assert out["videos"] and all(Path(v).suffix == ".mp4" and Path(v).stat().st_size > 0 for v in out["videos"])
    assert out["eval"]["step"] == 3


def test_eval_json(trained):
    runs_dir, out = trained
    p = cli("eval", f"run={out['run']}", f"runs_dir={runs_dir}", "--json", "task.eval.samples=32", "device=cpu")
    assert p.returncode == 0, p.stderr[-3000:]
    metrics = json.loads(p.stdout)
    keys = {"cell_accuracy", "board_accuracy", *(f"rollout_divergence_k{k}" for k in range(1, 9))}
    assert keys <= set(metrics), sorted(metrics)
    assert metrics["run"] == out["run"] and metrics["n_samples"] == 32 and metrics["step"] == 3
    assert metrics["seed"] == 1000003  # from the run's config
    assert 0.0 <= metrics["cell_accuracy"] <= 1.0


def test_generate_refuses_a_life_run_in_one_line(trained):
    runs_dir, out = trained
    line = one_line_error(cli("generate", f"run={out['run']}", f"runs_dir={runs_dir}", "device=cpu"))
    assert "LifeTask, which does not generate text" in line and "exp=shakespeare" in line


def test_runs_lists_the_run(trained, capsys):
    from interfere.cli.main import main

    runs_dir, out = trained
    assert main(["runs", f"runs_dir={runs_dir}", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    (row,) = listing["runs"]
    assert row["id"] == out["run"] and row["step"] == 3 and row["latest"] is True


def test_eval_on_other_rules_says_whether_the_run_trained_on_them(trained, tmp_path, capsys):
    from interfere.cli.main import main

    runs_dir, out = trained  # a Conway run
    p = cli("eval", f"run={out['run']}", f"runs_dir={runs_dir}", "--json", "task.eval.samples=8", "device=cpu",
            "task.rules=B36/S23")
    assert p.returncode == 0, p.stderr[-3000:]
    metrics = json.loads(p.stdout)
    assert metrics["rule"] == "B36/S23" and metrics["in_training"] is False and metrics["n_samples"] == 8
    assert len(metrics["by_state_count"]) == 18
    assert "'B3/S2/3'" in one_line_error(cli("eval", f"run={out['run']}", f"runs_dir={runs_dir}", "task.rules=B3/S2/3"))

    # A rule-general run (random training rules, FiLM on the rule bits), in process to save the start-up.
    general = tmp_path / "runs"
    assert main(["train", *TINY_TRAIN, "task.rules=random", "model.n_cond=18", "train.artifacts_every=0",
                 f"runs_dir={general}", "--json"]) == 0
    run = json.loads(capsys.readouterr().out)["run"]
    for rules, key, value in (("conway", "in_training", True), ("heldout", "in_training_share", 0.0),
                              ("[B3/S23,B234/S]", "in_training_share", 0.5)):
        assert main(["eval", f"run={run}", f"runs_dir={general}", "--json", "task.eval.samples=4",
                     f"task.rules={rules}"]) == 0
        metrics = json.loads(capsys.readouterr().out)
        assert metrics[key] == value, (rules, metrics)


# ----- one parser: a misspelt key gets did-you-mean in every command ------------------------------------------
@pytest.mark.parametrize("argv, suggestion", [
    (["train", "train.stepz=5"], "did you mean train.steps=5?"),
    (["eval", "sampels=5"], None),  # no close key: the list of keys instead
    (["eval", "rnu=x"], "did you mean run=x?"),
    (["generate", "promt=hi"], "did you mean prompt=hi?"),
    (["interpret", "induction", "seqlen=5"], "did you mean seq_len=5?"),
    (["explore", "life", "attention", "bords=3"], "did you mean boards=3?"),
    (["report", "rn=x"], "did you mean run=x?"),
    (["runs", "runs_dri=x"], "did you mean runs_dir=x?"),
])
def test_a_misspelt_key_gets_did_you_mean_in_every_command(argv, suggestion, tmp_path, capsys):
    from interfere.cli.main import main

    assert main([*argv, f"runs_dir={tmp_path}"] if argv[0] != "runs" else argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("interfere: error: "), err
    assert (suggestion or "it takes run=<") in err[0]
