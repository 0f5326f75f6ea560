"""rope2d's period follows the board: a Life run on any square board gets the torus it lives on, and an
explicit period that does not fit the board is refused before anything is written."""

from __future__ import annotations

import json

import pytest

from interfere.cli.main import main
from interfere.errors import ConfigError
from interfere.model import build_config, build_model
from interfere.tasks import build_task

ROPE2D = dict(d_model=32, n_layers=1, n_heads=2, positional_embedding_type="rope2d")


@pytest.mark.parametrize("side", [6, 10, 16])
def test_the_period_follows_a_square_board(side):
    task = build_task({"name": "life", "board": [side, side]}, "cpu")
    model = build_model(ROPE2D, task.vocab_size, task.seq_len, task.layout())
    assert model.cfg.rope_period == side
    assert build_config({**ROPE2D, "rope_period": side}, 10, 8, torus=(side, side)).rope_period == side


def test_an_unfitting_period_is_refused_with_the_fix():
    with pytest.raises(ConfigError) as e:
        build_config({**ROPE2D, "rope_period": 16}, 10, 8, torus=(10, 10))
    assert "model.rope_period=16" in str(e.value) and "model.rope_period=10 or null" in str(e.value)
    with pytest.raises(ConfigError, match="model.rope_period=null"):
        build_config({**ROPE2D, "rope_period": 8}, 10, 8, torus=(8, 12))
    assert build_config(ROPE2D, 10, 8, torus=(8, 12)).rope_period is None  # no single period fits 8x12
    # Without a torus (text, or learned positions) the period is the user's business.
    assert build_config({**ROPE2D, "rope_period": 7}, 10, 8).rope_period == 7
    assert build_config({**ROPE2D, "positional_embedding_type": "learned"}, 10, 8, torus=(10, 10)).rope_period is None


def test_the_cli_refuses_before_a_run_directory_exists(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["train", "exp=life_smoke", "task.board=[10,10]", "model.rope_period=16", "device=cpu",
                 f"runs_dir={runs}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.rope_period=16 does not fit the task's 10x10 torus" in err[0]
    assert not runs.exists()


def _train_smoke(runs, board: int) -> dict:
    assert main(["train", "exp=life_smoke", f"task.board=[{board},{board}]", "task.eval.samples=512",
                 "train.progress=false", "train.artifacts_every=0", "device=cpu", f"runs_dir={runs}"]) == 0
    (eval_file,) = runs.glob("life_smoke_*/eval.json")
    return json.loads(eval_file.read_text())


@pytest.mark.slow
def test_a_10x10_run_learns_as_the_16x16_one_does(tmp_path):
    # The smoke preset on 16x16 and, unchanged but for the board, on 10x10 (which once trained with the
    # preset's period 16: 94.7% of cells, 20.3% of boards).
    big = _train_smoke(tmp_path / "16", 16)
    small = _train_smoke(tmp_path / "10", 10)
    assert small["cell_accuracy"] >= min(0.99, big["cell_accuracy"] - 0.005), (small, big)
    assert small["board_accuracy"] >= min(0.9, big["board_accuracy"] - 0.05), (small, big)
