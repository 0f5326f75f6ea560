"""Packed token streams: the validation split is by document and never leaks into training windows; the
stream is step-indexed; the token files are cached and rebuilt only when the corpus changes."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from toy_task import one_thread  # noqa: F401 (autouse fixture)

from interfere.errors import ConfigError
from interfere.tasks.text import TextTask
from interfere.tasks.text import stream as S
from interfere.tasks.text import tokenizer as tokmod
from interfere.tasks.text.corpus import Corpus
from interfere.tasks.text.tokenizer import EOT_TEXT

WORDS = ("the and of to in that is was he for it with as his on be at by had not but from or have an they "
         "which one you were her all she there would their we him been has when who will more no if out so "
         "said what up").split()


def make_docs(n: int, seed: int = 0) -> list[str]:
    """n documents, each with a marker word that occurs nowhere else, and some shared filler."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        marker = f"MARK{i:03d}" + "".join(rng.choice("qxzjkvw") for _ in range(6))
        body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 80)))
        docs.append(f"{marker} begins. {body}. Ends {marker}, café 日本 🙂.\n")
    return docs


def write_folder(root, docs):
    root.mkdir(parents=True, exist_ok=True)
    for i, d in enumerate(docs):
        (root / f"sub{i % 3}" / f"doc{i:03d}.txt").parent.mkdir(exist_ok=True)
        (root / f"sub{i % 3}" / f"doc{i:03d}.txt").write_text(d, encoding="utf-8")
    return root


def marker(doc: str) -> str:
    return doc.split()[0]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("corpus"), make_docs(40))


@pytest.fixture(scope="module")
def task(corpus_dir, tmp_path_factory):
    return TextTask(corpus={"source": str(corpus_dir)}, tokenizer={"kind": "bpe", "vocab_size": 300}, seq_len=16,
                    val_fraction=0.25, cache_dir=str(tmp_path_factory.mktemp("cache")))


def test_no_validation_document_in_training_tokens(task):
    docs = list(task.corpus.documents())
    val_docs = [d for d, v in zip(docs, task.split.val) if v]
    train_docs = [d for d, v in zip(docs, task.split.val) if not v]
    assert len(val_docs) == 10 and len(train_docs) == 30

    # Read the token files directly (not through the memmap helpers) and decode them whole.
    dtype = np.dtype(task.store.meta["dtype"])
    train_ids = np.fromfile(task.store.dir / "train.bin", dtype=dtype).tolist()
    val_ids = np.fromfile(task.store.dir / "val.bin", dtype=dtype).tolist()
    train_text = task.tokenizer.decode(train_ids)
    val_text = task.tokenizer.decode(val_ids)
    assert train_text.split(EOT_TEXT) == ["", *train_docs]  # every training document, whole, in order
    assert val_text.split(EOT_TEXT) == ["", *val_docs]
    for d in val_docs:
        assert marker(d) not in train_text
    for d in train_docs:
        assert marker(d) not in val_text

    # And the windows the trainer sees never hold validation text.
    val_markers = [marker(d) for d in val_docs]
    for step in range(25):
        b = task.train_batch(step, 8)
        for row in torch.cat([b.inputs, b.targets[:, -1:]], dim=1).tolist():
            text = task.tokenizer.decode(row)
            assert not any(m in text for m in val_markers)


def test_split_depends_on_document_text_not_order(tmp_path):
    docs = make_docs(30, seed=1)
    a = Corpus(str(write_folder(tmp_path / "a", docs)))
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text("".join(json.dumps({"body": d}) + "\n" for d in reversed(docs)), encoding="utf-8")
    b = Corpus(str(jsonl), text_field="body")
    val_a = {d for d, v in zip(a.documents(), S.plan_split(a, 0.2).val) if v}
    val_b = {d for d, v in zip(b.documents(), S.plan_split(b, 0.2).val) if v}
    assert val_a == val_b and len(val_a) == 6
    # Identical documents always land on the same side.
    assert S.split_from_values([0.5, 0.1, 0.5, 0.9], 0.5) == [True, True, True, False]


def test_single_document_needs_a_separator(tmp_path):
    f = tmp_path / "one.txt"
    f.write_text("\n\n\n".join(make_docs(12)), encoding="utf-8")
    with pytest.raises(ConfigError, match="separator"):
        TextTask(corpus={"source": str(f)}, tokenizer={"kind": "bytes"}, seq_len=8, cache_dir=str(tmp_path / "c"))
    t = TextTask(corpus={"source": str(f), "separator": "\n\n\n"}, tokenizer={"kind": "bytes"}, seq_len=8,
                 val_fraction=0.25, cache_dir=str(tmp_path / "c"))
    assert t.store.meta["documents"] == {"train": 9, "val": 3}


def test_stream_is_step_indexed_and_world_size_free(task, corpus_dir):
    b = task.train_batch(7, 4)
    assert b.inputs.shape == b.targets.shape == b.loss_mask.shape == (4, 16)
    assert b.inputs.dtype == torch.long and b.loss_mask.all()
    assert torch.equal(b.inputs[:, 1:], b.targets[:, :-1])  # targets are the inputs shifted by one
    assert torch.equal(task.train_batch(7, 4).inputs, b.inputs)
    assert not torch.equal(task.train_batch(8, 4).inputs, b.inputs)
    halves = [task.train_batch(7, 2, rank=r, world_size=2) for r in range(2)]
    assert torch.equal(torch.cat([h.inputs for h in halves]), b.inputs)
    assert torch.equal(torch.cat([h.targets for h in halves]), b.targets)
    quarters = [task.train_batch(7, 1, rank=r, world_size=4) for r in range(4)]
    assert torch.equal(torch.cat([q.inputs for q in quarters]), b.inputs)
    # A fresh task (from the cache) draws the same data; another seed draws different data.
    again = TextTask(corpus={"source": str(corpus_dir)}, tokenizer={"kind": "bpe", "vocab_size": 300}, seq_len=16,
                     val_fraction=0.25, cache_dir=str(task.cache_dir))
    assert torch.equal(again.train_batch(7, 4).inputs, b.inputs)
    other = TextTask(corpus={"source": str(corpus_dir)}, tokenizer={"kind": "bpe", "vocab_size": 300}, seq_len=16,
                     val_fraction=0.25, cache_dir=str(task.cache_dir), seed=1)
    assert not torch.equal(other.train_batch(7, 4).inputs, b.inputs)


def test_windows_are_slices_of_the_token_file(task):
    tokens = np.fromfile(task.store.dir / "train.bin", dtype=np.dtype(task.store.meta["dtype"])).astype(np.int64)
    starts = task.global_starts(3, 5)
    b = task.train_batch(3, 5)
    for s, inp, tgt in zip(starts, b.inputs, b.targets):
        assert inp.tolist() == tokens[s:s + 16].tolist() and tgt.tolist() == tokens[s + 1:s + 17].tolist()
    assert all(0 <= s <= len(tokens) - 17 for s in starts)


def test_token_files_are_cached_and_rebuilt_when_the_corpus_changes(tmp_path, monkeypatch):
    folder = write_folder(tmp_path / "docs", make_docs(10))
    kw = dict(corpus={"source": str(folder)}, tokenizer={"kind": "bpe", "vocab_size": 280}, seq_len=8,
              val_fraction=0.2, cache_dir=str(tmp_path / "cache"))
    first = TextTask(**kw)
    assert isinstance(first.store.tokens("train"), np.memmap) and first.store.dtype == np.uint16

    def boom(*a, **k):
        raise AssertionError("rebuilt although nothing changed")

    with monkeypatch.context() as m:
        m.setattr(S, "build_token_files", boom)
        m.setattr(tokmod, "train_bpe", boom)
        second = TextTask(**kw)
    assert second.store.dir == first.store.dir and second.tokenizer.identity() == first.tokenizer.identity()
    (folder / "sub0" / "doc000.txt").write_text("a new first document, much longer than before. " * 5)
    third = TextTask(**kw)
    assert third.store.dir != first.store.dir


def test_dtype_follows_vocabulary_size():
    assert S.dtype_for(257) == np.uint16 and S.dtype_for(65536) == np.uint16 and S.dtype_for(65537) == np.uint32


def test_eval_chunks_score_every_validation_target_once():
    for n, L in [(100, 16), (97, 16), (17, 16), (18, 16), (2, 16)]:
        chunks = S.eval_chunks(n, L, None, 0)
        targets = [t for s, length in chunks for t in range(s + 1, s + length)]
        assert targets == list(range(1, n))
        assert all(length <= L + 1 for _, length in chunks)
    some = S.eval_chunks(1000, 16, 5, seed=3)
    assert len(some) == 5 and some == sorted(some) and all(length == 17 for _, length in some)
    assert some == S.eval_chunks(1000, 16, 5, seed=3) and some != S.eval_chunks(1000, 16, 5, seed=4)


def test_layout_is_causal_and_the_audit_passes(task):
    from interfere.model import build_model
    from interfere.train.audit import audit_leakage

    layout = task.layout()
    assert layout.positions is None and layout.segment_ids is None and layout.attn_mask is None
    allowed = task.allowed_inputs()
    assert torch.equal(allowed, torch.ones(16, 16, dtype=torch.bool).tril())
    torch.manual_seed(0)
    model = build_model({"d_model": 32, "n_layers": 1, "n_heads": 2}, task.vocab_size, task.seq_len)
    model.set_layout(layout)
    audit_leakage(model, task, task.train_batch(0, 2))
