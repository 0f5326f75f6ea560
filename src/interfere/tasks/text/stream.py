"""Token streams: the corpus tokenized once into memory-mapped files, and step-indexed windows over them.

Layout on disk (under the cache dir, keyed by a hash of corpus + tokenizer + split):
    text/<key>/train.bin   every training document as [eot, tokens...], concatenated (uint16 or uint32)
    text/<key>/val.bin     the same for the validation documents
    text/<key>/train.idx   int64 start of each document in train.bin (val.idx likewise)
    text/<key>/meta.json   dtype, token and document counts; written last, so its presence means "complete"

The validation split is by document (a hash of its text, `corpus.doc_hash_value`), so no validation text
is ever inside a training window. Files are read through `np.memmap`, so a corpus larger than memory
streams from disk: a batch touches only its own windows.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from interfere.errors import ConfigError
from interfere.files import atomic_write, atomic_write_text, cache_dir as default_cache_dir
from interfere.tasks.text.corpus import Corpus, doc_hash_value

FORMAT = 1
ENCODE_CHUNK_CHARS = 4_000_000  # documents are tokenized in batches of about this many characters


def dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


@dataclass
class Split:
    """Which documents are validation (one bool per document, in corpus order)."""

    val: list[bool]

    def digest(self) -> str:
        return hashlib.sha256(bytes(self.val)).hexdigest()[:16]

    @property
    def n_val(self) -> int:
        return sum(self.val)

    @property
    def n_train(self) -> int:
        return len(self.val) - self.n_val


def split_from_values(values: list[float], val_fraction: float) -> list[bool]:
    """Validation = the round(val_fraction * n) documents (at least one) with the smallest hash values,
    plus any document whose value ties the last of them (identical texts stay together)."""
    if val_fraction <= 0 or not values:
        return [False] * len(values)
    k = max(1, round(val_fraction * len(values)))
    threshold = sorted(values)[k - 1]
    return [v <= threshold for v in values]


def plan_split(corpus: Corpus, val_fraction: float, cache_dir: str | os.PathLike | None = None) -> Split:
    """Each document's side of the split, from a hash of its text (corpus.doc_hash_value): the same on
    every machine and whatever the file order. Cached under cache_dir/splits/ when cache_dir is given."""
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"task.val_fraction={val_fraction}: use a fraction in [0, 1)")
    cached = None
    if cache_dir is not None:
        ident = json.dumps([FORMAT, "rank", corpus.fingerprint(), float(val_fraction)])
        key = hashlib.sha256(ident.encode()).hexdigest()[:20]
        cached = Path(cache_dir).expanduser() / "splits" / f"{key}.json"
        if cached.is_file():
            return Split(json.loads(cached.read_text()))
    values = [doc_hash_value(d) for d in corpus.documents()]
    if not values:
        raise ConfigError(f"task.corpus.source={corpus.source!r} has no documents")
    split = Split(split_from_values(values, val_fraction))
    if val_fraction > 0 and split.n_train == 0:
        if len(values) == 1:
            raise ConfigError(f"task.corpus.source={corpus.source!r} is a single document, so no document-level "
                              "validation split exists: set task.corpus.separator (e.g. '\\n\\n') to split it "
                              "into documents, or task.val_fraction=0")
        raise ConfigError(f"task.corpus.source={corpus.source!r}: all {len(values)} documents fell in the "
                          f"validation split; lower task.val_fraction or add documents")
    if cached is not None:
        atomic_write_text(cached, json.dumps(split.val))
    return split


def train_documents(corpus: Corpus, split: Split) -> Iterator[str]:
    """The training documents only (what a tokenizer is trained on)."""
    for doc, is_val in zip(corpus.documents(), split.val):
        if not is_val:
            yield doc


def cache_key(corpus: Corpus, tokenizer_identity: str, split: Split) -> str:
    h = hashlib.sha256(json.dumps({"format": FORMAT, "corpus": corpus.fingerprint(), "tokenizer": tokenizer_identity,
                                   "split": split.digest()}, sort_keys=True).encode())
    return h.hexdigest()[:20]


def _chunks(docs: Iterable[tuple[str, bool]], chars: int) -> Iterator[list[tuple[str, bool]]]:
    chunk, n = [], 0
    for item in docs:
        chunk.append(item)
        n += len(item[0])
        if n >= chars:
            yield chunk
            chunk, n = [], 0
    if chunk:
        yield chunk


def build_token_files(corpus: Corpus, tokenizer, split: Split, directory: Path) -> Path:
    """Tokenize the corpus into directory/{train,val}.{bin,idx} + meta.json (atomically: a temporary
    folder renamed into place, so concurrent builders, e.g. several ranks, never see half a file)."""
    dtype = dtype_for(tokenizer.vocab_size)
    eot = tokenizer.eot_id
    with atomic_write(directory, directory=True, keep_existing=True) as tmp:
        files = {s: open(tmp / f"{s}.bin", "wb") for s in ("train", "val")}
        starts = {"train": [], "val": []}
        counts = {"train": 0, "val": 0}
        chars = {"train": 0, "val": 0}
        try:
            for chunk in _chunks(zip(corpus.documents(), split.val), ENCODE_CHUNK_CHARS):
                encoded = tokenizer.encode_batch([d for d, _ in chunk])
                for (doc, is_val), ids in zip(chunk, encoded):
                    s = "val" if is_val else "train"
                    arr = np.asarray([eot, *ids], dtype=np.int64)
                    files[s].write(arr.astype(dtype).tobytes())
                    starts[s].append(counts[s])
                    counts[s] += len(arr)
                    chars[s] += len(doc)
        finally:
            for f in files.values():
                f.close()
        for s in ("train", "val"):
            np.asarray(starts[s], dtype=np.int64).tofile(tmp / f"{s}.idx")
        meta = {"format": FORMAT, "dtype": dtype.name, "vocab_size": tokenizer.vocab_size, "eot_id": eot,
                "corpus": corpus.describe(), "tokens": counts, "documents": {s: len(v) for s, v in starts.items()},
                "chars": chars}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return Path(directory)


class TokenStore:
    """The memory-mapped train/val token files of one (corpus, tokenizer, split)."""

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        meta_file = self.dir / "meta.json"
        if not meta_file.is_file():
            raise ConfigError(f"{self.dir} is not a complete token cache (no meta.json); delete it to rebuild")
        self.meta = json.loads(meta_file.read_text())
        self.dtype = np.dtype(self.meta["dtype"])
        self._maps: dict[str, np.ndarray] = {}

    @classmethod
    def open_or_build(cls, corpus: Corpus, tokenizer, split: Split,
                      cache_dir: str | os.PathLike | None = None) -> "TokenStore":
        root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        directory = root / "text" / cache_key(corpus, tokenizer.identity(), split)
        if not (directory / "meta.json").is_file():
            build_token_files(corpus, tokenizer, split, directory)
        return cls(directory)

    def tokens(self, split: str) -> np.ndarray:
        """The split's whole token stream as a read-only memmap (empty array if it has no tokens)."""
        if split not in self._maps:
            n = int(self.meta["tokens"][split])
            self._maps[split] = (np.memmap(self.dir / f"{split}.bin", dtype=self.dtype, mode="r", shape=(n,))
                                 if n else np.zeros(0, dtype=self.dtype))
        return self._maps[split]

    def doc_starts(self, split: str) -> np.ndarray:
        return np.fromfile(self.dir / f"{split}.idx", dtype=np.int64)

    def n_tokens(self, split: str) -> int:
        return int(self.meta["tokens"][split])


def window_starts(seed: int, step: int, n: int, n_tokens: int, length: int) -> np.ndarray:
    """Start offsets of the n windows of global batch `step`: a function of (seed, step) only."""
    high = n_tokens - length + 1
    if high <= 0:
        raise ConfigError(f"the training split has {n_tokens} tokens, fewer than one window of {length} "
                          f"(task.seq_len + 1): lower task.seq_len or use a bigger corpus")
    rng = np.random.default_rng([int(seed), int(step)])
    return rng.integers(0, high, size=n, dtype=np.int64)


def gather_windows(tokens: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """[len(starts), length] int64 windows tokens[s : s + length]."""
    out = np.empty((len(starts), length), dtype=np.int64)
    for i, s in enumerate(starts):
        out[i] = tokens[s:s + length]
    return out


def eval_chunks(n_tokens: int, seq_len: int, n_samples: int | None, seed: int) -> list[tuple[int, int]]:
    """(start, length) windows over a validation stream: consecutive, each target predicted once.

    Windows of seq_len + 1 tokens start every seq_len tokens; the last, shorter one takes the rest. With
    n_samples below the number of windows, a seeded subset of the full-length ones (sorted) is used.
    """
    if n_tokens < 2:
        return []
    full = (n_tokens - 1) // seq_len
    chunks = [(i * seq_len, seq_len + 1) for i in range(full)]
    rest = n_tokens - full * seq_len
    if rest >= 2:
        chunks.append((full * seq_len, rest))
    if n_samples is not None and n_samples < len(chunks):
        pool = full if full >= n_samples else len(chunks)
        pick = np.random.default_rng([int(seed), 0x5EED]).choice(pool, size=n_samples, replace=False)
        chunks = [chunks[i] for i in sorted(pick.tolist())]
    return chunks
