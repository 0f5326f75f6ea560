"""Tokenizers: text <-> token ids, for three kinds.

- `bpe`:   a byte-level BPE trained on the corpus with the `tokenizers` library (GPT-2's byte alphabet and
           pre-tokenisation regex, so every Unicode string round-trips);
- `bytes`: the raw UTF-8 bytes (ids 0-255);
- `gpt2`:  GPT-2's BPE from local files: a tiktoken ranks file (`gpt2.tiktoken`, shipped by
           `pip install --no-deps openai-whisper==20250625`, located without importing the package) or
           `vocab.json` + `merges.txt`.

Every kind has one end-of-text token `eot_id` that separates documents. Text never encodes to it (a
literal "<|endoftext|>" in a corpus stays text); `decode` renders it as EOT_TEXT. The common interface:
`encode(str) -> list[int]`, `encode_batch(list[str])`, `decode(list[int]) -> str`, `vocab_size`, `eot_id`,
`token_bytes(id) -> bytes`, `save(dir)`, and `load_tokenizer(dir)`.

`RankBPE` is a small pure-Python implementation of tiktoken's algorithm (GPT-2 regex pre-tokenisation,
then byte-pair merges by rank): it converts a `.tiktoken` file into vocab + merges and serves as an
independent reference in the tests.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Iterable

from interfere.errors import ConfigError

EOT_TEXT = "<|endoftext|>"
META = "interfere_tokenizer.json"
HF_FILE = "tokenizer.json"
KINDS = ("bpe", "bytes", "gpt2")
# GPT-2's pre-tokenisation (the `tokenizers` ByteLevel pre-tokenizer uses the same pattern).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_EOT = 50256


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


@functools.lru_cache(maxsize=1)
def unicode_to_bytes() -> dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


class Tokenizer:
    """The interface every kind implements (see the module docstring)."""

    kind: str
    vocab_size: int
    eot_id: int

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes a token stands for (b"" for eot)."""
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        """Text of the ids; eot shows as EOT_TEXT; a cut-off UTF-8 sequence shows as U+FFFD."""
        parts, current = [], []
        for i in ids:
            i = int(i)
            if i == self.eot_id:
                parts.append(self._decode_plain(current))
                parts.append(EOT_TEXT)
                current = []
            else:
                current.append(i)
        parts.append(self._decode_plain(current))
        return "".join(parts)

    def _decode_plain(self, ids: list[int]) -> str:
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors="replace")

    def byte_lengths(self) -> list[int]:
        """Bytes per token id, for bits per byte. The end-of-text token counts as one byte: it is the
        document separator, charged the same whichever tokenizer produced the text."""
        lengths = [len(self.token_bytes(i)) for i in range(self.vocab_size)]
        lengths[self.eot_id] = 1
        return lengths

    def save(self, directory: str | os.PathLike) -> Path:
        raise NotImplementedError

    def identity(self) -> str:
        """A hash of what this tokenizer does (for cache keys)."""
        raise NotImplementedError

    def _write_meta(self, directory: Path, **extra) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"format": 1, "kind": self.kind, "vocab_size": self.vocab_size, "eot_id": self.eot_id, **extra}
        (directory / META).write_text(json.dumps(meta, indent=2) + "\n")


class ByteTokenizer(Tokenizer):
    """Raw UTF-8 bytes: ids 0-255 are the bytes, 256 is end-of-text."""

    kind = "bytes"
    vocab_size = 257
    eot_id = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def token_bytes(self, token_id: int) -> bytes:
        return b"" if token_id == self.eot_id else bytes([token_id])

    def _decode_plain(self, ids: list[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")

    def save(self, directory) -> Path:
        directory = Path(directory)
        self._write_meta(directory)
        return directory

    def identity(self) -> str:
        return "bytes-v1"


class HFTokenizer(Tokenizer):
    """A byte-level BPE run by the `tokenizers` library, with the end-of-text id kept outside its model."""

    def __init__(self, tok, kind: str, eot_id: int | None = None):
        self.tok, self.kind = tok, kind
        n = tok.get_vocab_size(with_added_tokens=True)
        self.eot_id = n if eot_id is None else int(eot_id)
        self.vocab_size = max(n, self.eot_id + 1)
        self._bytes: list[bytes] | None = None

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def token_bytes(self, token_id: int) -> bytes:
        if self._bytes is None:
            u2b = unicode_to_bytes()
            table = [b""] * self.vocab_size
            for piece, i in self.tok.get_vocab(with_added_tokens=False).items():
                if i != self.eot_id:
                    table[i] = bytes(u2b[c] for c in piece)
            self._bytes = table
        return self._bytes[token_id]

    def _decode_plain(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=False) if ids else ""

    def save(self, directory) -> Path:
        directory = Path(directory)
        self._write_meta(directory)
        self.tok.save(str(directory / HF_FILE))
        return directory

    def identity(self) -> str:
        h = hashlib.sha256(self.tok.to_str().encode())
        h.update(f"{self.kind}:{self.eot_id}".encode())
        return h.hexdigest()


# ----- building --------------------------------------------------------------------------------------
def _byte_level_pipeline(tok):
    from tokenizers import decoders, pre_tokenizers

    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def train_bpe(documents: Iterable[str], vocab_size: int, min_frequency: int = 2) -> HFTokenizer:
    """A byte-level BPE of `vocab_size` ids (the last is end-of-text) trained on the documents.

    Every byte is in the initial alphabet, so any string encodes. A corpus too small to fill the vocabulary
    yields fewer ids (vocab_size reports the real number).
    """
    from tokenizers import Tokenizer as _Tok, models, pre_tokenizers, trainers

    if vocab_size < 258:
        raise ConfigError(f"task.tokenizer.vocab_size={vocab_size}: a byte-level BPE needs at least 258 "
                          "(256 bytes, one merge, end-of-text); use kind=bytes for a pure byte model")
    tok = _byte_level_pipeline(_Tok(models.BPE()))
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 1, min_frequency=min_frequency, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(documents, trainer=trainer)
    return HFTokenizer(tok, "bpe")


class RankBPE:
    """tiktoken's algorithm in pure Python: regex pre-tokenisation, then merge the adjacent pair whose
    concatenation has the lowest rank until none is in the table. Slow; for conversion and as a reference."""

    def __init__(self, ranks: dict[bytes, int], eot_id: int | None = None, pattern: str = GPT2_PATTERN):
        import regex

        self.ranks = ranks
        self.eot_id = len(ranks) if eot_id is None else eot_id
        self.pattern = regex.compile(pattern)
        self.decoder = {r: b for b, r in ranks.items()}

    @staticmethod
    def merge_parts(piece: bytes, ranks: dict[bytes, int], max_rank: int | None = None) -> list[bytes]:
        parts = [piece[i:i + 1] for i in range(len(piece))]
        while len(parts) > 1:
            best, best_rank = None, None
            for i in range(len(parts) - 1):
                r = ranks.get(parts[i] + parts[i + 1])
                if r is not None and (max_rank is None or r < max_rank) and (best_rank is None or r < best_rank):
                    best, best_rank = i, r
            if best is None:
                break
            parts[best:best + 2] = [parts[best] + parts[best + 1]]
        return parts

    def encode(self, text: str) -> list[int]:
        ids = []
        for m in self.pattern.finditer(text):
            piece = m.group().encode("utf-8")
            if piece in self.ranks:
                ids.append(self.ranks[piece])
            else:
                ids.extend(self.ranks[p] for p in self.merge_parts(piece, self.ranks))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        return b"".join(self.decoder[i] for i in ids if i != self.eot_id).decode("utf-8", errors="replace")


def read_tiktoken(path: str | os.PathLike) -> dict[bytes, int]:
    """A `.tiktoken` ranks file: one `<base64 token> <rank>` per line."""
    ranks = {}
    with open(path, "rb") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
            except ValueError as e:
                raise ConfigError(f"{path}:{n} is not '<base64 token> <rank>'") from e
    return ranks


def tiktoken_to_vocab_merges(ranks: dict[bytes, int]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """vocab (byte-level unicode strings -> id) and merges (in rank order) equivalent to the ranks."""
    b2u = bytes_to_unicode()

    def s(b: bytes) -> str:
        return "".join(b2u[x] for x in b)

    vocab = {s(b): r for b, r in ranks.items()}
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) == 1:
            continue
        parts = RankBPE.merge_parts(token, ranks, max_rank=rank)
        if len(parts) != 2:
            raise ConfigError(f"tiktoken rank {rank} ({token!r}) is not the merge of two lower-ranked tokens")
        merges.append((s(parts[0]), s(parts[1])))
    return vocab, merges


def default_gpt2_file() -> Path:
    """whisper/assets/gpt2.tiktoken inside the installed openai-whisper package (found, never imported)."""
    spec = importlib.util.find_spec("whisper")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        f = Path(loc) / "assets" / "gpt2.tiktoken"
        if f.is_file():
            return f
    raise ConfigError("task.tokenizer.kind=gpt2 needs GPT-2's BPE files: "
                      "pip install --no-deps openai-whisper==20250625 "
                      "(ships whisper/assets/gpt2.tiktoken), or set task.tokenizer.path to a .tiktoken file or a "
                      "folder with vocab.json and merges.txt")


def gpt2_files(path: str | os.PathLike | None) -> tuple[str, list[Path]]:
    """("tiktoken", [file]) or ("vocab_merges", [vocab.json, merges.txt]) for task.tokenizer.path."""
    if path is None or str(path) == "":
        return "tiktoken", [default_gpt2_file()]
    p = Path(path).expanduser()
    if p.is_file() and p.suffix == ".tiktoken":
        return "tiktoken", [p]
    if p.is_file() and p.name.endswith(".json"):
        p = p.parent
    if p.is_dir():
        if (p / "vocab.json").is_file() and (p / "merges.txt").is_file():
            return "vocab_merges", [p / "vocab.json", p / "merges.txt"]
        found = sorted(p.glob("*.tiktoken"))
        if len(found) == 1:
            return "tiktoken", found
    raise ConfigError(f"task.tokenizer.path={str(path)!r}: expected a .tiktoken file or a folder holding "
                      "vocab.json and merges.txt (or a single .tiktoken file)")


def load_gpt2(path: str | os.PathLike | None = None) -> HFTokenizer:
    """GPT-2's BPE (50257 ids, end-of-text 50256) from local files, run by the `tokenizers` library."""
    from tokenizers import Tokenizer as _Tok, models

    form, files = gpt2_files(path)
    if form == "tiktoken":
        ranks = read_tiktoken(files[0])
        vocab, merges = tiktoken_to_vocab_merges(ranks)
        tok = _Tok(models.BPE(vocab=vocab, merges=merges))
        eot = len(ranks)
    else:
        tok = _Tok(models.BPE.from_file(str(files[0]), str(files[1])))
        vocab = json.loads(files[0].read_text(encoding="utf-8"))
        eot = vocab.get(EOT_TEXT, len(vocab))
    return HFTokenizer(_byte_level_pipeline(tok), "gpt2", eot_id=eot)


def build_tokenizer(kind: str, vocab_size: int | None = None, path=None,
                    documents: Iterable[str] | None = None) -> Tokenizer:
    """A tokenizer of the given kind; `documents` (an iterable of strings) is needed to train a bpe."""
    if kind == "bytes":
        return ByteTokenizer()
    if kind == "gpt2":
        return load_gpt2(path)
    if kind == "bpe":
        if path:
            return load_tokenizer(path)
        if documents is None:
            raise ValueError("training a bpe tokenizer needs the documents")
        return train_bpe(documents, int(vocab_size or 2048))
    raise ConfigError(f"task.tokenizer.kind={kind!r}; use one of {', '.join(KINDS)}")


def load_tokenizer(directory: str | os.PathLike) -> Tokenizer:
    """A tokenizer saved by `save(directory)`."""
    from tokenizers import Tokenizer as _Tok

    directory = Path(directory)
    meta_file = directory / META
    if not meta_file.is_file():
        raise ConfigError(f"{directory} holds no saved tokenizer ({META} is missing)")
    meta = json.loads(meta_file.read_text())
    kind = meta.get("kind")
    if kind == "bytes":
        return ByteTokenizer()
    if kind in ("bpe", "gpt2"):
        tok = _Tok.from_file(str(directory / HF_FILE))
        return HFTokenizer(tok, kind, eot_id=meta["eot_id"])
    raise ConfigError(f"{meta_file}: unknown tokenizer kind {kind!r}")
