"""metrics.jsonl, the progress bar and the plain-line fallback, logger configuration errors."""

import io
import json

import pytest

from interfere.errors import ConfigError
from interfere.train.logging import Progress, TrainLogger


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_bar_on_a_terminal_shows_loss_lr_throughput_and_eta():
    out = _Terminal()
    bar = Progress(total_steps=10, start_step=0, stream=out)
    for _ in range(4):
        bar.advance()
    bar.show(4, loss=1.2345, lr=3e-3, tokens_per_s=12345.0, s_per_step=0.5)
    bar.advance()
    bar.close()
    text = out.getvalue()
    assert "loss=1.2345" in text and "lr=3.00e-03" in text and "tok_s=12,345" in text
    assert "5/10" in text and "<" in text  # tqdm's elapsed<remaining (the ETA)


def test_plain_lines_without_a_terminal(capsys):
    bar = Progress(total_steps=10, start_step=2, stream=io.StringIO())
    assert bar.bar is None
    bar.show(4, loss=1.0, lr=1e-3, tokens_per_s=100.0, s_per_step=2.0)
    assert capsys.readouterr().out.strip() == "step 4/10  loss 1.0000  lr 1.00e-03  tok/s 100  eta 0:12"


def test_metrics_file_and_rank_zero_only(tmp_path, capsys):
    log = TrainLogger(tmp_path, "r", total_steps=4, start_step=0, progress=False)
    log.log(2, {"loss": 1.5, "lr": 0.1, "tokens": 64, "nan": float("nan")})
    log.log(2, {"eval/acc": 0.5})
    log.close()
    recs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert recs == [{"step": 2, "loss": 1.5, "lr": 0.1, "tokens": 64, "nan": None}, {"step": 2, "eval/acc": 0.5}]
    assert "step 2/4  loss 1.5000" in capsys.readouterr().out  # eval records are not shown as progress

    other = tmp_path / "rank1"
    other.mkdir()
    log = TrainLogger(other, "r", total_steps=4, start_step=0, is_main=False)
    log.log(1, {"loss": 1.0})
    log.close()
    assert not (other / "metrics.jsonl").exists()


def test_unknown_logger_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="train.loggers.*'mlflow'"):
        TrainLogger(tmp_path, "r", total_steps=1, start_step=0, loggers=["mlflow"])


@pytest.mark.parametrize("name, module", [("wandb", "wandb"), ("tensorboard", "torch.utils.tensorboard")])
def test_a_missing_logger_package_names_the_pip_install(tmp_path, monkeypatch, name, module):
    import sys

    monkeypatch.setitem(sys.modules, module, None)  # `import` of it now raises ImportError
    with pytest.raises(ConfigError, match=f"train.loggers lists {name} but it is not installed: pip install {name} "):
        TrainLogger(tmp_path, "r", total_steps=1, start_step=0, loggers=[name])
    assert not (tmp_path / name).exists()


def test_wandb_runs_offline_without_network(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "cache"))
    log = TrainLogger(tmp_path, "run_1", total_steps=2, start_step=0, progress=False, loggers=["wandb"],
                      config={"train": {"lr": 0.1}})
    log.log(1, {"loss": 1.0, "lr": 0.1})
    log.log(2, {"loss": 0.5, "nan": float("nan")})
    log.close()
    (offline,) = (tmp_path / "wandb").glob("offline-run-*-run_1")
    assert list(offline.glob("*.wandb"))  # the run's data, to `wandb sync` later
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
