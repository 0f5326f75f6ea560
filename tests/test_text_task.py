"""TextTask and its corpora: sources and their errors, the built-in Shakespeare, the config file's keys,
saving the tokenizer with a run, samples as artifacts, and the exp configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from toy_task import one_thread  # noqa: F401 (autouse fixture)

from interfere.errors import ConfigError
from interfere.tasks import build_task
from interfere.tasks.text import TextTask
from interfere.tasks.text import tokenizer as tokmod
from interfere.tasks.text.corpus import Corpus, play_text

CONF = Path(__file__).resolve().parents[1] / "src" / "interfere" / "conf"
DOCS = [f"Doc {i}: " + "the quick brown fox jumps over the lazy dog; naïve café. " * (3 + i % 4) for i in range(20)]




@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("docs")
    for i, d in enumerate(DOCS):
        sub = root / ("b" if i % 2 else "a") / ("deep" if i % 5 == 0 else "")
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{i:02d}.{'md' if i % 3 == 0 else 'txt'}").write_text(d, encoding="utf-8")
    (root / "ignored.json").write_text("{}")
    (root / "notes.rst").write_text("not a corpus file")
    return root


def _task(folder, cache, **kw):
    args = dict(corpus={"source": str(folder)}, tokenizer={"kind": "bpe", "vocab_size": 290}, seq_len=16,
                val_fraction=0.2, cache_dir=str(cache), eval={"samples": 4, "batch_size": 4},
                generate={"prompt": "Doc", "max_new_tokens": 12, "preset": "balanced"})
    args.update(kw)
    return TextTask(**args)


# ----- corpora --------------------------------------------------------------------------------------
def test_folder_is_read_recursively_in_sorted_order(folder):
    c = Corpus(str(folder))
    rel = [f.relative_to(folder).as_posix() for f in c.files()]
    assert rel == sorted(rel) and len(rel) == 20 and all(r.endswith((".txt", ".md")) for r in rel)
    assert sorted(c.documents()) == sorted(DOCS)


def test_jsonl_with_a_text_field_and_its_errors(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps({"body": "first"}) + "\n\n" + json.dumps({"body": "second", "id": 2}) + "\n")
    assert list(Corpus(str(f), text_field="body").documents()) == ["first", "second"]
    with pytest.raises(ConfigError, match=r"c\.jsonl:1 has no field 'text'.*text_field"):
        list(Corpus(str(f)).documents())
    f.write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(ConfigError, match=r"c\.jsonl:2 is not valid JSON"):
        list(Corpus(str(f)).documents())


def test_missing_sources_name_the_path(tmp_path):
    missing = tmp_path / "nowhere.txt"
    with pytest.raises(ConfigError, match="nowhere.txt"):
        TextTask(corpus={"source": str(missing)}, tokenizer={"kind": "bytes"}, cache_dir=str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no \\*.txt or \\*.md files under .*empty"):
        Corpus(str(tmp_path / "empty")).files()
    with pytest.raises(ConfigError, match="task.corpus has no key"):
        TextTask(corpus={"path": "x"}, cache_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="task.tokenizer has no key"):
        TextTask(corpus={"source": str(missing)}, tokenizer={"knd": "bpe"}, cache_dir=str(tmp_path))


def test_a_corpus_too_short_for_one_window_is_a_config_error(tmp_path):
    (tmp_path / "d").mkdir()
    for i in range(5):
        (tmp_path / "d" / f"{i}.txt").write_text(f"tiny {i}")
    with pytest.raises(ConfigError, match="seq_len"):
        TextTask(corpus={"source": str(tmp_path / "d")}, tokenizer={"kind": "bytes"}, seq_len=512,
                 cache_dir=str(tmp_path / "c"))


def test_play_markdown_reads_as_a_play():
    md = ("# Hamlet\n\n## ACT I\n\n### SCENE I. Elsinore.\n\n_Enter BERNARDO and FRANCISCO, two\nSentinels_\n\n"
          "**BERNARDO**  \nWho's there?  \n__\\[Aside]_  \nNay, answer me \\--stand.\n\n\n\n"
          "**FRANCISCO**  \nLong live &amp; the king!\n")
    assert play_text(md) == ("Hamlet\n\nACT I\n\nSCENE I. Elsinore.\n\nEnter BERNARDO and FRANCISCO, two\nSentinels\n\n"
                             "BERNARDO:\nWho's there?\n[Aside]\nNay, answer me --stand.\n\n"
                             "FRANCISCO:\nLong live & the king!\n")


def test_shakespeare_is_every_play_as_plain_text():
    c = Corpus("shakespeare")
    files = c.files()
    assert len(files) >= 37 and all(f.suffix == ".md" for f in files)
    docs = list(c.documents())
    assert len(docs) == len(files)
    hamlet = next(d for d in docs if d.startswith("Hamlet"))
    assert "HAMLET:\nTo be, or not to be" in hamlet
    for d in docs:
        assert "**" not in d and "_" not in d and "\\[" not in d and "  \n" not in d


# ----- the task ------------------------------------------------------------------------------------
def test_the_config_file_keys_build_the_task(folder, tmp_path):
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(CONF / "task" / "text.yaml")
    cfg.corpus.source = str(folder)
    cfg.tokenizer.vocab_size = 290
    cfg.seq_len = 16
    cfg.cache_dir = str(tmp_path)
    task = build_task(cfg, "cpu")
    assert isinstance(task, TextTask) and task.vocab_size <= 290 and task.eot_id == task.vocab_size - 1
    assert task.eval_cfg["samples"] == cfg.eval.samples and task.gen_cfg["preset"] == cfg.generate.preset


def test_tokenizer_saved_with_the_run_is_reloaded_without_training(folder, tmp_path, monkeypatch):
    task = _task(folder, tmp_path / "cache1")
    run_dir = tmp_path / "runs" / "r1"
    saved = task.save(run_dir)
    assert saved == run_dir / "tokenizer" and (saved / "tokenizer.json").is_file()

    def no_training(*a, **k):
        raise AssertionError("the tokenizer was retrained")

    monkeypatch.setattr(tokmod, "train_bpe", no_training)
    again = _task(folder, tmp_path / "fresh_cache", run_dir=run_dir)  # an empty cache: only the run has it
    assert again.tokenizer.identity() == task.tokenizer.identity()
    assert torch.equal(again.train_batch(3, 2).inputs, task.train_batch(3, 2).inputs)


def test_evaluate_artifacts_and_the_attached_tokenizer(folder, tmp_path):
    from interfere.model import build_model

    task = _task(folder, tmp_path / "cache")
    torch.manual_seed(0)
    model = build_model({"d_model": 32, "n_layers": 1, "n_heads": 2}, task.vocab_size, task.seq_len)
    model.set_layout(task.layout())
    metrics = task.evaluate(model)
    assert {"loss", "perplexity", "bits_per_token", "bits_per_byte", "accuracy"} <= set(metrics)
    assert metrics["n_windows"] == 4 and json.dumps(metrics)

    run_dir = tmp_path / "run"
    (run_dir / "assets").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("name: x\n")
    paths = task.artifacts(model, 7, run_dir / "assets")
    assert paths == [run_dir / "assets" / "samples" / "step_000007.txt"]
    text = paths[0].read_text(encoding="utf-8")
    assert text.startswith("Doc") and len(text) > 3
    assert model.tokenizer is task.tokenizer
    assert model.to_string(model.to_tokens("naïve café")[0]) == "naïve café"

    greedy = task.complete(model, "Doc 3", max_new_tokens=10, strategy="greedy")
    assert greedy == task.complete(model, "Doc 3", max_new_tokens=10, strategy="greedy", use_cache=False)
    assert task.complete(model, "Doc", seed=3) == task.complete(model, "Doc", seed=3)


def test_a_trained_run_keeps_its_tokenizer_and_generates_from_the_command_line(folder, tmp_path, monkeypatch, capsys):
    """The loop saves the tokenizer as soon as the run exists; load() and `interfere generate` use it."""
    import interfere
    from interfere.config import compose
    from interfere.cli.main import main
    from interfere.train.loop import train

    runs = tmp_path / "runs"
    cfg = compose(["task=text", "name=tiny_text", f"task.corpus.source={folder}", "task.tokenizer.vocab_size=290",
                   "task.seq_len=16", f"task.cache_dir={tmp_path / 'cache'}", "task.eval.samples=4", "model.d_model=32",
                   "model.n_layers=1", "model.n_heads=2", "train.steps=2", "train.batch_size=2", "train.warmup_steps=1",
                   "train.artifacts_every=0", "train.progress=false", f"runs_dir={runs}", "device=cpu"])
    run_dir = train(cfg)
    capsys.readouterr()  # the training log
    assert (run_dir / "tokenizer" / "tokenizer.json").is_file()
    trained_with = _task(folder, tmp_path / "cache").tokenizer.identity()

    def no_training(*a, **k):
        raise AssertionError("the tokenizer was retrained")

    monkeypatch.setattr(tokmod, "train_bpe", no_training)
    monkeypatch.setenv("INTERFERE_CACHE", str(tmp_path / "empty_cache"))
    model, task = interfere.load(run_dir, runs_dir=runs, device="cpu")
    assert task.tokenizer.identity() == trained_with

    def generate(*words):
        assert main(["generate", f"run={run_dir.name}", f"runs_dir={runs}", "prompt=Doc 1", "--json", *words]) == 0
        return json.loads(capsys.readouterr().out)

    greedy = generate("strategy=greedy", "max_new_tokens=12")
    assert greedy["prompt"] == "Doc 1" and len(greedy["samples"]) == 1
    assert greedy["samples"] == generate("strategy=greedy", "max_new_tokens=12", "use_cache=false")["samples"]
    assert greedy["samples"][0] == task.complete(model, "Doc 1", max_new_tokens=12, strategy="greedy")
    two = generate("preset=creative", "samples=2", "seed=5", "max_new_tokens=12")["samples"]
    assert two == generate("preset=creative", "samples=2", "seed=5", "max_new_tokens=12")["samples"]
    assert len(two) == 2 and two[0] != two[1]  # sample i is drawn with seed + i
    assert main(["generate", f"run={run_dir.name}", f"runs_dir={runs}", "top_p=3", "strategy=top_p"]) == 2
    assert "top_p=3.0: it must be in (0, 1]" in capsys.readouterr().err


def test_log_metrics_reports_training_accuracy(folder, tmp_path):
    task = _task(folder, tmp_path / "cache")
    b = task.train_batch(0, 2)
    logits = torch.nn.functional.one_hot(b.targets, task.vocab_size).float()
    assert task.log_metrics(logits, b) == {"accuracy": 1.0}


# ----- configs ---------------------------------------------------------------------------------------
def test_shakespeare_experiments_compose():
    from interfere.config import compose

    for exp in ("shakespeare", "shakespeare_smoke"):
        cfg = compose([f"exp={exp}"])
        assert cfg.task.name == "text" and cfg.task.corpus.source == "shakespeare"
        assert cfg.task.tokenizer.kind == "bpe" and cfg.model.tie_embeddings
        params = set(TextTask.__init__.__code__.co_varnames)
        assert set(cfg.task) <= params
    full = compose(["exp=shakespeare"])
    shape = (full.model.n_layers, full.model.d_model, full.task.seq_len, full.task.tokenizer.vocab_size)
    assert shape == (4, 256, 256, 2048)


@pytest.mark.slow
def test_shakespeare_smoke_trains_loads_and_generates(tmp_path):
    """`interfere train exp=shakespeare_smoke`, then interfere.load and a sample (a minute or two on 2 cores)."""
    import interfere
    from interfere.config import compose
    from interfere.train.loop import train

    cfg = compose(["exp=shakespeare_smoke", f"runs_dir={tmp_path / 'runs'}", f"task.cache_dir={tmp_path / 'cache'}",
                   "train.steps=6", "train.progress=false"])
    run_dir = train(cfg)
    assert (run_dir / "assets" / "samples").is_dir() and (run_dir / "tokenizer").is_dir()
    metrics = json.loads((run_dir / "eval.json").read_text())
    assert metrics["bits_per_byte"] > 0
    model, task = interfere.load(run_dir, runs_dir=tmp_path / "runs", device="cpu")
    assert isinstance(task, TextTask)
    text = task.complete(model, "ROMEO:", max_new_tokens=20)
    assert isinstance(text, str) and text


def test_gpt2_task_converts_the_ranks_once(folder, tmp_path, monkeypatch):
    kw = dict(tokenizer={"kind": "gpt2"}, seq_len=8)
    task = _task(folder, tmp_path, **kw)
    assert (task.vocab_size, task.eot_id, task.store.dtype) == (50257, 50256, np.dtype(np.uint16))
    assert task.tokenizer.encode("Hello world") == [15496, 995]

    def no_conversion(*a, **k):
        raise AssertionError("converted again")

    monkeypatch.setattr(tokmod, "load_gpt2", no_conversion)
    again = _task(folder, tmp_path, **kw)
    assert again.tokenizer.identity() == task.tokenizer.identity()
