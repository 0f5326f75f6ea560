"""The consistency lens (interfere.lens) on a tiny text run: the Gumbel straight-through path, the patch,
the dump's shards, an oracle lens's scores, training through the project's trainer with exact resume, the CLI."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import interfere.lens  # noqa: F401 (registers task.name=lens)
from interfere.lens.dump import dump, load_split, read_manifest
from interfere.lens.evaluate import evaluate_lens
from interfere.lens.models import Decoder, Lens, Ramp
from interfere.lens.runs import fresh_lens, load_lens
from interfere.lens.subject import load_subject, resid_hook, subject_spec
from toy_task import one_thread  # noqa: F401 (autouse fixture)

DOCS = [f"Scene {i}. " + "To be, or not to be, that is the question; whether 'tis nobler in the mind. " * (4 + i % 3)
        for i in range(12)]
LAYER = 1


@pytest.fixture(scope="module")
def subject_run(tmp_path_factory):
    """(runs_dir, run id) of a tiny byte-level text run (2 layers, d_model 32), trained for 3 steps."""
    from interfere.config import compose
    from interfere.train import train

    root = tmp_path_factory.mktemp("lens")
    for i, d in enumerate(DOCS):
        (root / "docs").mkdir(exist_ok=True)
        (root / "docs" / f"{i:02d}.txt").write_text(d)
    runs = root / "runs"
    run_dir = train(compose([
        "task=text", f"task.corpus.source={root / 'docs'}", "task.tokenizer.kind=bytes", "task.seq_len=32",
        "task.val_fraction=0.25", f"task.cache_dir={root / 'cache'}", "task.eval.samples=2", "model.d_model=32",
        "model.n_layers=2", "model.n_heads=2", "train.steps=3", "train.batch_size=4", "train.progress=false",
        "train.artifacts_every=0", "train.audit=false", f"runs_dir={runs}", "device=cpu"]))
    return runs, Path(run_dir).name


@pytest.fixture(scope="module")
def subject(subject_run):
    runs, run = subject_run
    return load_subject(subject_spec(run=run, runs_dir=runs))


@pytest.fixture(scope="module")
def dumped(subject, tmp_path_factory):
    out = tmp_path_factory.mktemp("dump") / "d"
    dump(subject, out, LAYER, n_train=96, n_val=40, ctx=24, min_pos=4, shard_size=32, batch_size=16)
    return out


def lens_cfg(data, runs, *more):
    from interfere.config import compose

    return compose(["+lens=default", f"task.data={data}", f"runs_dir={runs}", "task.length=3", "train.steps=4",
                    "train.batch_size=4", "train.warmup_steps=1", "train.progress=false", "train.log_every=1",
                    "task.eval.samples=16", "task.temperature.steps=4", "task.loss.fluency.steps=2",
                    "task.loss.entropy=0.01", "device=cpu", *more])


# ----- pieces ---------------------------------------------------------------------------------------
def test_gumbel_straight_through_is_one_hot_forward_with_gradients_into_the_projection(subject):
    torch.manual_seed(0)
    decoder = Decoder(subject.trainable_copy(), n_prompt=2, length=4).train()
    acts = torch.randn(5, subject.d_model)
    one_hot, logits = decoder(acts, tau=0.5)
    assert one_hot.shape == (5, 4, subject.d_vocab) == logits.shape
    assert torch.equal(one_hot.detach().sum(-1), torch.ones(5, 4))
    assert set(one_hot.detach().unique().tolist()) == {0.0, 1.0}
    (one_hot * torch.randn_like(one_hot)).sum().backward()  # a loss that sees the tokens only
    assert decoder.proj.weight.grad is not None and decoder.proj.weight.grad.abs().sum() > 0
    assert torch.equal(decoder.proj.weight.detach(), torch.eye(subject.d_model))  # identity-initialised


def test_ramp_moves_linearly_then_holds():
    r = Ramp(start=1.0, end=0.1, steps=10)
    assert [r.at(s) for s in (0, 5, 10, 50)] == pytest.approx([1.0, 0.55, 0.1, 0.1])


def test_the_patch_replaces_exactly_layer_L_at_position_p(subject):
    """Against TransformerLens' own run_with_cache and an in-place hook written here."""
    torch.manual_seed(1)
    tokens = torch.randint(0, subject.d_vocab, (3, 20))
    positions = torch.tensor([19, 7, 12])
    value = torch.randn(3, subject.d_model)
    ours = subject.patched_logits(tokens, positions, LAYER, replace=value)
    clean = subject.model(tokens)

    def reference_hook(act, hook):
        act = act.clone()
        act[torch.arange(3), positions] = value
        return act

    reference = subject.model.run_with_hooks(tokens, fwd_hooks=[(resid_hook(LAYER), reference_hook)])
    for r, p in enumerate(positions.tolist()):
        assert torch.equal(ours[r, :p], clean[r, :p])  # earlier positions: untouched
        assert not torch.allclose(ours[r, p], clean[r, p])
        torch.testing.assert_close(ours[r, p], reference[r, p], rtol=0, atol=1e-5)
    with subject.model.hooks(fwd_hooks=[(resid_hook(LAYER), reference_hook)]):
        _, patched_cache = subject.model.run_with_cache(tokens)
    _, clean_cache = subject.model.run_with_cache(tokens)
    assert torch.equal(patched_cache[resid_hook(LAYER - 1)], clean_cache[resid_hook(LAYER - 1)])  # not layer L-1
    torch.testing.assert_close(patched_cache[resid_hook(LAYER)][torch.arange(3), positions], value)


# ----- the dump ---------------------------------------------------------------------------------------
def test_shards_reload_exactly_and_an_interrupted_dump_resumes_to_the_same_bytes(subject, dumped, tmp_path):
    m = read_manifest(dumped)
    assert m["layer"] == LAYER and m["hook"] == resid_hook(LAYER) and m["subject"]["kind"] == "run"
    assert [len(m["splits"][s]["shards"]) for s in ("train", "val")] == [3, 2]
    train = load_split(dumped, "train")
    assert train.acts.shape == (96, subject.d_model) and train.tokens.shape == (96, 24)
    assert int(train.positions.min()) >= 4 and int(train.positions.max()) <= 23
    shards = train.acts.reshape(3, 32, -1)  # A' is the next row's activation within its shard
    assert torch.equal(train.paired, shards.roll(-1, 1).reshape(96, -1))
    recomputed = subject.activations(train.tokens[:8], train.positions[:8], LAYER)
    torch.testing.assert_close(train.acts[:8], recomputed, rtol=0, atol=1e-5)

    part = tmp_path / "part"
    dump(subject, part, LAYER, n_train=32, n_val=40, ctx=24, min_pos=4, shard_size=32, batch_size=16)
    assert len(read_manifest(part)["splits"]["train"]["shards"]) == 1
    dump(subject, part, LAYER, n_train=96, n_val=40, ctx=24, min_pos=4, shard_size=32, batch_size=16)
    for name in (p.relative_to(dumped) for p in dumped.rglob("*.safetensors")):
        assert (part / name).read_bytes() == (dumped / name).read_bytes(), name
    for split in ("train", "val"):
        a, b = load_split(dumped, split), load_split(part, split)
        assert all(torch.equal(x, y) for x, y in zip(vars(a).values(), vars(b).values()))


def test_a_dump_with_other_settings_is_refused(subject, dumped):
    from interfere.errors import ConfigError

    with pytest.raises(ConfigError, match="different dump"):
        dump(subject, dumped, 0, n_train=96, n_val=40, ctx=24, min_pos=4, shard_size=32)
    with pytest.raises(ConfigError, match="cannot grow"):  # val's last shard holds 8 of 32
        dump(subject, dumped, LAYER, n_train=96, n_val=50, ctx=24, min_pos=4, shard_size=32)


# ----- scores ---------------------------------------------------------------------------------------
class Oracle(Lens):
    """A lens whose 'reconstruction' is the activation itself."""

    def forward(self, acts, tau=1.0):
        one_hot, logits = self.decoder(acts, tau)
        return one_hot, logits, acts.clone()


def _task(dumped, tmp_path):
    from interfere.tasks import build_task

    return build_task(lens_cfg(dumped, tmp_path / "runs").task, torch.device("cpu"))


def test_an_encoder_returning_the_activation_scores_kl_0_and_fve_1(dumped, tmp_path):
    task = _task(dumped, tmp_path)
    lens = fresh_lens(task)
    oracle = Oracle(lens.decoder, lens.encoder)
    m = evaluate_lens(task, oracle, n_samples=32, seed=0).metrics
    assert m["lens_kl"] == pytest.approx(0.0, abs=1e-6) and m["lens_fve"] == pytest.approx(1.0, abs=1e-6)
    assert m["zero_kl"] > 1e-3 and m["resample_kl"] > 1e-4  # the baselines do lose something
    assert m["mean_fve"] == pytest.approx(0.0, abs=1e-6)  # subtracting a constant explains no variance
    assert m["n"] == 32 and 0 < m["top_token_freq"] <= 1 and 0 < m["distinct_share"] <= 1


# ----- training through the trainer -----------------------------------------------------------------
def test_the_lens_trains_through_the_trainer_and_resumes_exactly(dumped, tmp_path):
    from safetensors.torch import load_file

    from interfere.train import train
    from interfere.train.resume import resume_config

    runs = tmp_path / "runs"
    full = Path(train(lens_cfg(dumped, runs, "train.ckpt_every=2")))
    logged = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    terms = {k for r in logged for k in r}
    assert {"kl", "mse", "fluency", "entropy", "tau", "alpha", "top_token_freq", "eval/lens_kl"} <= terms
    # the temperature anneals 1 -> 0.1 over 4 steps (batch s is drawn at step s - 1)
    assert [r["tau"] for r in logged if "tau" in r] == pytest.approx([1.0, 0.775, 0.55, 0.325])

    cut = runs / "cut"
    shutil.copytree(full, cut, symlinks=True)
    shutil.rmtree(cut / "checkpoints" / "step_4")
    (cut / "checkpoints" / "latest").unlink()
    os.symlink("step_2", cut / "checkpoints" / "latest")
    resumed = Path(train(resume_config(str(cut), [], runs_dir=runs)))
    a = load_file(str(full / "checkpoints" / "step_4" / "model.safetensors"))
    b = load_file(str(resumed / "checkpoints" / "step_4" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    before = load_file(str(full / "checkpoints" / "step_2" / "model.safetensors"))
    assert any(not torch.equal(a[k], before[k]) for k in a)  # it did train

    task, lens, ckpt = load_lens(str(full), runs_dir=runs, device="cpu")
    assert ckpt.name == "step_4"
    assert all(torch.equal(lens.state_dict()[k], a[k]) for k in a)


# ----- the command line -----------------------------------------------------------------------------
def cli(*words):
    return subprocess.run([sys.executable, "-m", "interfere", "lens", *map(str, words)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_cli_dump_and_eval_as_json_and_a_bad_layer_is_one_line(subject_run, tmp_path):
    runs, run = subject_run
    out = tmp_path / "d"
    p = cli("dump", f"run={run}", f"runs_dir={runs}", "layer=0", "n_train=16", "n_val=16", "ctx=16", f"out={out}",
            "device=cpu", "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout)["splits"]["val"]["n"] == 16
    p = cli("eval", f"data={out}", "samples=8", "verbose=2", "seed=3", "device=cpu", "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout)
    assert r["lens"] == "untrained" and r["n"] == 8 and len(r["samples"]) == 2
    assert {"lens_kl", "mean_kl", "zero_kl", "resample_kl", "shuffled_kl", "last_tokens_kl"} <= set(r)
    assert "[[" in r["samples"][0]["text"] and len(r["samples"][0]["top_original"]) == 5
    p = cli("dump", f"run={run}", f"runs_dir={runs}", "layer=7", f"out={tmp_path / 'bad'}", "device=cpu")
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "layer=7" in p.stderr
    assert not (tmp_path / "bad").exists()


# ----- SmolLM2 (slow: `make pretrained` first) -----------------------------------------------------
@pytest.mark.slow
def test_smollm2_dump_and_eval(tmp_path):
    out = tmp_path / "smol"
    p = cli("dump", "model=smollm2", "layer=15", "n_train=32", "n_val=16", "ctx=24", f"out={out}", "device=cpu",
            "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    m = json.loads(p.stdout)
    assert m["subject"] == {"kind": "pretrained", "model": "smollm2"} and m["d_model"] == 576
    p = cli("eval", f"data={out}", "samples=8", "verbose=1", "device=cpu", "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout)
    assert r["n"] == 8 and r["zero_kl"] > r["mean_kl"] >= 0 and r["samples"][0]["explanation"]
