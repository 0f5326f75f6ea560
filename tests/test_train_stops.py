"""Ways a run ends early, in process on the toy task: signals, non-finite losses, the time budget."""

import json
import math
import os
import signal

import pytest
import torch

from interfere.model import load_model
from interfere.train import train
from interfere.train.checkpoint import load_checkpoint, read_state
from interfere.train.errors import NonFiniteLossError
from interfere.train.runs import list_runs, resolve_checkpoint
from toy_task import make_cfg, one_thread  # noqa: F401 (autouse fixture)


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _weights(ckpt):
    return load_model(ckpt, "cpu").state_dict()


def _only_run(runs):
    (run,) = [p for p in runs.iterdir() if not p.is_symlink()]
    return run


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_signal_checkpoints_the_current_step_and_resume_is_exact(tmp_path, capsys, signame):
    common = dict(steps=16, ckpt_every=5, log_every=1, audit=False)
    model = dict(dropout=0.1)  # the RNG state matters
    straight = train(make_cfg(tmp_path / "a", model=model, **common))

    runs = tmp_path / "b"
    before = signal.getsignal(getattr(signal, signame))
    # The signal arrives while step 7's batch is drawn: step 7 finishes, then the run stops.
    run = train(make_cfg(runs, model=model, task={"signal_at": 6, "signal": signame}, **common))
    assert signal.getsignal(getattr(signal, signame)) is before  # handlers restored
    out = capsys.readouterr().out
    assert f"{signame}: stopped after step 7" in out and f"Resume with: interfere train resume={run.name}" in out
    state = read_state(run / "checkpoints" / "latest")
    assert (state["step"], state["stopped"]) == (7, "signal")
    assert os.readlink(run / "checkpoints" / "latest") == "step_7"
    assert not (run / "eval.json").exists()  # a signal asks to stop soon: no final evaluation
    assert [r["step"] for r in _records(run) if "loss" in r] == list(range(1, 8))

    cfg = make_cfg(runs, model=model, **common)
    cfg.resume = run.name
    assert train(cfg) == run
    wa, wb = _weights(resolve_checkpoint(straight)), _weights(resolve_checkpoint(run))
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name
    assert read_state(run / "checkpoints" / "latest")["stopped"] == "done"
    assert json.loads((run / "eval.json").read_text())["stopped"] == "done"
    assert [r["step"] for r in _records(run) if "loss" in r] == list(range(1, 17))


def test_non_finite_loss_stops_naming_the_step_and_the_last_good_checkpoint(tmp_path, capsys):
    runs = tmp_path / "runs"
    cfg = make_cfg(runs, model=dict(n_cond=1), task=dict(cond=1, nan_at=[13]), steps=20, ckpt_every=5,
                   log_every=1, audit=False)
    with pytest.raises(NonFiniteLossError) as e:
        train(cfg)
    run = _only_run(runs)
    good = run / "checkpoints" / "step_10"
    message = str(e.value)
    assert "\n" not in message and message.startswith("step 14: the loss is nan")
    assert str(good) in message and "resume=" in message and "train.skip_nonfinite" in message
    assert e.value.step == 14 and e.value.last_checkpoint == good
    assert os.readlink(run / "checkpoints" / "latest") == "step_10"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step_10", "step_5"]
    state = load_checkpoint(good, load_model(good), None)  # still whole
    assert state["step"] == 10 and "stopped" not in state
    assert not (run / "eval.json").exists()
    records = _records(run)
    assert records[-1]["step"] == 14 and records[-1]["nonfinite"] is True and records[-1]["loss"] is None
    assert [r["step"] for r in records if r.get("loss") is not None] == list(range(1, 14))

    # The same data without the NaNs: identical up to the last good checkpoint.
    clean = train(make_cfg(tmp_path / "clean", model=dict(n_cond=1), task=dict(cond=1), steps=20, ckpt_every=5,
                           log_every=1, audit=False))
    wa, wb = _weights(good), _weights(clean / "checkpoints" / "step_10")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_skip_nonfinite_skips_up_to_k_steps_then_stops(tmp_path, capsys):
    common = dict(model=dict(n_cond=1), steps=12, ckpt_every=0, log_every=1, audit=False, skip_nonfinite=2)
    run = train(make_cfg(tmp_path / "a", task=dict(cond=1, nan_at=[3, 7]), **common))
    out = capsys.readouterr().out
    assert "step 4: the loss is nan: step skipped (optimizer not stepped; 1 of train.skip_nonfinite=2)" in out
    assert "step 8: the loss is nan: step skipped" in out
    records = _records(run)
    assert [r["step"] for r in records if r.get("nonfinite")] == [4, 8]
    assert [r["step"] for r in records if r.get("loss") is not None and "eval/loss" not in r] == \
        [s for s in range(1, 13) if s not in (4, 8)]
    ckpt = resolve_checkpoint(run)
    state = read_state(ckpt)
    assert (state["step"], state["skipped_nonfinite"], state["stopped"]) == (12, 2, "done")
    optim = torch.load(ckpt / "optim.pt", weights_only=True)
    assert {int(s["step"]) for s in optim["state"].values()} == {10}  # the two bad steps never stepped Adam
    assert all(torch.isfinite(w).all() for w in _weights(ckpt).values() if w.is_floating_point())

    with pytest.raises(NonFiniteLossError, match=r"^step 10: .*skip_nonfinite=2 bad steps were skipped first"):
        train(make_cfg(tmp_path / "b", task=dict(cond=1, nan_at=[3, 7, 9]), **common))


def test_time_budget_stops_cleanly_and_says_why(tmp_path, capsys):
    runs = tmp_path / "runs"
    common = dict(steps=30, ckpt_every=0, log_every=1, audit=False, artifacts_every=100)
    run = train(make_cfg(runs, max_minutes=1e-9, **common))  # used up during the first step
    assert "train.max_minutes=1e-09 used up: stopped after step 1 of 30" in capsys.readouterr().out
    state = read_state(run / "checkpoints" / "latest")
    assert (state["step"], state["stopped"]) == (1, "budget") and state["train_seconds"] > 0
    final = json.loads((run / "eval.json").read_text())
    assert (final["step"], final["stopped"]) == (1, "budget") and "loss" in final
    assert (run / "assets" / "step_1.txt").is_file()  # artifacts as at any end

    # Resumed with the same budget: nothing left to train; with a bigger one it goes on to the end.
    cfg = make_cfg(runs, max_minutes=1e-9, **common)
    cfg.resume = run.name
    train(cfg)
    assert read_state(run / "checkpoints" / "latest")["step"] == 1
    cfg = make_cfg(runs, max_minutes=60, **common)
    cfg.resume = run.name
    train(cfg)
    state = read_state(run / "checkpoints" / "latest")
    assert (state["step"], state["stopped"]) == (30, "done")
    assert json.loads((run / "eval.json").read_text())["stopped"] == "done"

    (row,) = list_runs(runs)
    assert (row["id"], row["step"], row["tokens"], row["stopped"]) == (run.name, 30, 30 * 56, "done")
    assert row["acc_name"] == "eval/acc" and row["acc"] == final_acc(run) and math.isfinite(row["loss"])


def final_acc(run):
    return json.loads((run / "eval.json").read_text())["acc"]


@pytest.mark.parametrize("bad", [dict(skip_nonfinite=-1), dict(skip_nonfinite=1.5), dict(max_minutes=0),
                                 dict(max_minutes="soon"), dict(parallel="zero3")])
def test_bad_stop_options_are_config_errors(tmp_path, bad):
    from interfere.errors import ConfigError

    key = next(iter(bad))
    with pytest.raises(ConfigError, match=f"train.{key}"):
        train(make_cfg(tmp_path, steps=1, audit=False, **bad))
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # nothing written


def test_a_repeated_signal_is_one_request_a_later_one_quits_at_once():
    from interfere.train.signals import StopRequest

    before = signal.getsignal(signal.SIGINT)
    stop = StopRequest().install()
    try:
        # raise_signal delivers to this thread before it returns (os.kill may land on a torch thread and be
        # handled later), so each handler has run by the next line
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)  # e.g. from the terminal and again from torchrun: the same request
        assert stop.name == "SIGINT"
        stop._first -= StopRequest.GRACE + 1  # as if the first came a while ago
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    finally:
        stop.restore()
    assert signal.getsignal(signal.SIGINT) is before
