"""Tokenizers: round trips for every kind (with non-ASCII text), save/load, GPT-2 against known ids and an
independent pure-Python implementation of tiktoken's algorithm."""

from __future__ import annotations

import json

import pytest

from interfere.errors import ConfigError
from interfere.tasks.text.tokenizer import (EOT_TEXT, ByteTokenizer, RankBPE, build_tokenizer, bytes_to_unicode,
                                            default_gpt2_file, load_gpt2, load_tokenizer, read_tiktoken,
                                            tiktoken_to_vocab_merges, train_bpe)

SAMPLES = [
    "Hello world",
    "To be, or not to be: that is the question.\n",
    "  leading and trailing spaces  \n\n\t tabs\r\nwindows line ends",
    "Café, naïve façade, Ångström, Dvořák, ½ × ² — “quotes” ‘single’",
    "日本語のテキストと中文字符，한국어",
    "emoji 🤖👍🏽🏳️‍🌈 and a ZWJ family 👨‍👩‍👧",
    "Ελληνικά и русский текст; עברית; العربية",
    "code: def f(x): return x**2  # <|endoftext|> is plain text here",
    "",
]

CORPUS = [
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife.",
    "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse.",
    "All happy families are alike; each unhappy family is unhappy in its own way.",
] * 20


@pytest.fixture(scope="module")
def bpe():
    return train_bpe(iter(CORPUS), vocab_size=300)


@pytest.fixture(scope="module")
def gpt2():
    return load_gpt2()


def test_bytes_round_trip_and_ids():
    tok = ByteTokenizer()
    assert (tok.vocab_size, tok.eot_id) == (257, 256)
    for s in SAMPLES:
        ids = tok.encode(s)
        assert ids == list(s.encode("utf-8"))
        assert tok.decode(ids) == s
    assert tok.decode([104, 105, 256, 33]) == "hi" + EOT_TEXT + "!"
    assert tok.byte_lengths() == [1] * 257


def test_bpe_round_trips_any_unicode(bpe):
    assert bpe.kind == "bpe"
    assert bpe.eot_id == bpe.vocab_size - 1 and bpe.vocab_size <= 300
    for s in SAMPLES:
        ids = bpe.encode(s)
        assert all(0 <= i < bpe.vocab_size and i != bpe.eot_id for i in ids)
        assert bpe.decode(ids) == s
    assert bpe.encode_batch(SAMPLES) == [bpe.encode(s) for s in SAMPLES]
    # Merges were learnt: the training text is shorter in tokens than in bytes.
    assert len(bpe.encode(CORPUS[0])) < 0.8 * len(CORPUS[0].encode())  # 43 merges were learnt


def test_bpe_tokens_are_byte_strings_that_concatenate(bpe):
    for s in SAMPLES:
        ids = bpe.encode(s)
        assert b"".join(bpe.token_bytes(i) for i in ids) == s.encode("utf-8")
    lengths = bpe.byte_lengths()
    assert lengths[bpe.eot_id] == 1 and all(n >= 1 for n in lengths)


def test_eot_is_never_produced_by_text_and_decodes_as_marker(bpe):
    ids = bpe.encode("a <|endoftext|> b")
    assert bpe.eot_id not in ids
    assert bpe.decode([*bpe.encode("one"), bpe.eot_id, *bpe.encode("two")]) == "one" + EOT_TEXT + "two"


def test_bpe_training_is_deterministic(bpe):
    again = train_bpe(iter(CORPUS), vocab_size=300)
    assert again.identity() == bpe.identity()


def test_save_and_load_every_kind(tmp_path, bpe):
    for tok in (ByteTokenizer(), bpe):
        d = tok.save(tmp_path / tok.kind)
        back = load_tokenizer(d)
        assert (back.kind, back.vocab_size, back.eot_id) == (tok.kind, tok.vocab_size, tok.eot_id)
        assert back.identity() == tok.identity()
        for s in SAMPLES:
            assert back.encode(s) == tok.encode(s)
    with pytest.raises(ConfigError, match="no saved tokenizer"):
        load_tokenizer(tmp_path / "nothing")


def test_bad_kind_and_tiny_vocab_are_config_errors():
    with pytest.raises(ConfigError, match="kind"):
        build_tokenizer("wordpiece")
    with pytest.raises(ConfigError, match="vocab_size"):
        train_bpe(iter(CORPUS), vocab_size=100)


# ----- GPT-2 -----------------------------------------------------------------------------------------
def test_gpt2_known_ids(gpt2):
    assert (gpt2.vocab_size, gpt2.eot_id) == (50257, 50256)
    assert gpt2.encode("Hello world") == [15496, 995]
    assert gpt2.encode("hello") == [31373]
    assert gpt2.encode(" the") == [262]
    assert gpt2.encode("\n") == [198]
    assert gpt2.decode([15496, 995, 50256]) == "Hello world" + EOT_TEXT


def test_gpt2_round_trips_and_matches_the_reference_algorithm(gpt2):
    reference = RankBPE(read_tiktoken(default_gpt2_file()))
    for s in SAMPLES:
        ids = gpt2.encode(s)
        assert gpt2.decode(ids) == s
        assert ids == reference.encode(s), s
        assert reference.decode(ids) == s


def test_gpt2_from_vocab_and_merges_files(tmp_path, gpt2):
    # Write GPT-2's vocab.json + merges.txt (the Hugging Face format) from the ranks, then load those.
    vocab, merges = tiktoken_to_vocab_merges(read_tiktoken(default_gpt2_file()))
    vocab[EOT_TEXT] = 50256
    (tmp_path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    tok = build_tokenizer("gpt2", path=tmp_path)
    assert (tok.vocab_size, tok.eot_id) == (50257, 50256)
    assert tok.encode("Hello world") == [15496, 995]
    for s in SAMPLES:
        assert tok.encode(s) == gpt2.encode(s)
        assert tok.decode(tok.encode(s)) == s


def test_gpt2_saved_with_a_run_loads_identically(tmp_path, gpt2):
    back = load_tokenizer(gpt2.save(tmp_path / "tok"))
    assert back.kind == "gpt2" and back.eot_id == 50256
    assert back.encode(SAMPLES[5]) == gpt2.encode(SAMPLES[5])


def test_gpt2_bad_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="tokenizer.path"):
        build_tokenizer("gpt2", path=tmp_path / "missing")


def test_byte_to_unicode_map_is_a_bijection_onto_printables():
    m = bytes_to_unicode()
    assert sorted(m) == list(range(256)) and len(set(m.values())) == 256
    assert all(c.isprintable() and not c.isspace() for c in m.values())
    assert m[ord("A")] == "A" and m[ord(" ")] == "Ġ"
