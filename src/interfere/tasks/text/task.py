"""TextTask: the Task protocol (interfere.tasks.base) for causal language modelling on a corpus."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interfere.errors import ConfigError
from interfere.files import atomic_write, cache_dir as default_cache_dir
from interfere.tasks.base import Batch, Layout, plain
from interfere.tasks.text import metrics as M
from interfere.tasks.text.corpus import corpus_from_config
from interfere.tasks.text.stream import (TokenStore, eval_chunks, gather_windows, plan_split,
                                         train_documents, window_starts)
from interfere.tasks.text.tokenizer import KINDS, META, Tokenizer, build_tokenizer, gpt2_files, load_tokenizer

TOKENIZER_DIR = "tokenizer"  # runs/<id>/tokenizer/
_TOKENIZER_DEFAULTS = {"kind": "bpe", "vocab_size": 2048, "path": None}
_EVAL_DEFAULTS = {"samples": 128, "seed": 1234, "batch_size": 16}
_GENERATE_DEFAULTS = {"prompt": "", "max_new_tokens": 200, "preset": "balanced", "seed": 0}


def _merge(name: str, defaults: dict, given) -> dict:
    given = plain(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(f"task.{name} has no key(s) {unknown}; its keys are {sorted(defaults)}")
    return {**defaults, **given}


class TextTask:
    """Next-token prediction on packed windows of a tokenized corpus.

    At construction: the corpus is split by document, the tokenizer is trained (or loaded: from
    `run_dir/tokenizer/` when given, else from the cache) and the corpus tokenized into memory-mapped
    files (cached). `save(run_dir)` writes the tokenizer into the run so `interfere.load` can rebuild it.
    """

    headline = "accuracy"  # the evaluate() key `interfere runs` shows

    def __init__(self, *, name: str = "text", corpus="shakespeare", tokenizer=None, seq_len: int = 256,
                 val_fraction: float = 0.1, seed: int = 0, cache_dir: str | None = None, eval=None,  # noqa: A002
                 generate=None, device="cpu", run_dir: str | os.PathLike | None = None):
        from interfere.device import pick_device

        self.name = name
        self.seq_len = int(seq_len)
        if self.seq_len < 1:
            raise ConfigError(f"task.seq_len={seq_len}: it must be >= 1")
        self.seed = int(seed)
        self.val_fraction = float(val_fraction)
        self.device = pick_device(device if device is not None else "cpu")
        self.tok_cfg = _merge("tokenizer", _TOKENIZER_DEFAULTS, tokenizer)
        self.eval_cfg = _merge("eval", _EVAL_DEFAULTS, eval)
        self.gen_cfg = _merge("generate", _GENERATE_DEFAULTS, generate)
        if self.tok_cfg["kind"] not in KINDS:
            raise ConfigError(f"task.tokenizer.kind={self.tok_cfg['kind']!r}; use one of {', '.join(KINDS)}")
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()

        self.corpus = corpus_from_config(corpus)
        self.split = plan_split(self.corpus, self.val_fraction, self.cache_dir)
        self.tokenizer: Tokenizer = self._tokenizer(Path(run_dir) if run_dir else None)
        self.vocab_size = self.tokenizer.vocab_size
        self.eot_id = self.tokenizer.eot_id
        self.store = TokenStore.open_or_build(self.corpus, self.tokenizer, self.split, self.cache_dir)
        self._byte_lengths = torch.tensor(self.tokenizer.byte_lengths(), dtype=torch.long)
        n_train = self.store.n_tokens("train")
        if n_train < self.seq_len + 1:
            raise ConfigError(f"the training split of {self.corpus.source!r} has {n_train} tokens, fewer than one "
                              f"window of task.seq_len + 1 = {self.seq_len + 1}: lower task.seq_len")

    # ----- tokenizer ------------------------------------------------------------------------------
    def _tokenizer(self, run_dir: Path | None) -> Tokenizer:
        if run_dir is not None and (run_dir / TOKENIZER_DIR).is_dir():
            return load_tokenizer(run_dir / TOKENIZER_DIR)
        kind, path = self.tok_cfg["kind"], self.tok_cfg["path"]
        if kind == "bytes" or (kind == "bpe" and path):
            return build_tokenizer(kind, self.tok_cfg["vocab_size"], path)
        if kind == "bpe":
            # Trained on the training documents only; training is deterministic, so the cache and every
            # rank agree.
            key = {"kind": "bpe", "corpus": self.corpus.fingerprint(), "split": self.split.digest(),
                   "vocab_size": int(self.tok_cfg["vocab_size"])}
            return self._cached(key, lambda: build_tokenizer(
                "bpe", int(self.tok_cfg["vocab_size"]), documents=train_documents(self.corpus, self.split)))
        # gpt2: converting the ranks file to vocab + merges takes a few seconds; do it once.
        key = {"kind": "gpt2", "files": [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns)
                                         for f in gpt2_files(path)[1]]}
        return self._cached(key, lambda: build_tokenizer("gpt2", path=path))

    def _cached(self, key: dict, build) -> Tokenizer:
        """A tokenizer from cache_dir/tokenizers/<hash of key>/, built and stored there on a miss."""
        name = hashlib.sha256(json.dumps({"format": 1, **key}, sort_keys=True).encode()).hexdigest()[:20]
        directory = self.cache_dir / "tokenizers" / name
        if (directory / META).is_file():
            return load_tokenizer(directory)
        tok = build()
        with atomic_write(directory, directory=True, keep_existing=True) as tmp:  # another process may store it too
            tok.save(tmp)
        return tok

    def save(self, run_dir: str | os.PathLike) -> Path:
        """Write the tokenizer to run_dir/tokenizer/ (what `TextTask(..., run_dir=...)` reads back)."""
        return self.tokenizer.save(Path(run_dir) / TOKENIZER_DIR)

    def attach(self, model: torch.nn.Module) -> torch.nn.Module:
        """Give the model this tokenizer, for `model.to_tokens(str)` / `model.to_string(ids)`."""
        from interfere.model.modes import unwrap

        unwrap(model).tokenizer = self.tokenizer
        return model

    # ----- layout ---------------------------------------------------------------------------------
    def layout(self) -> Layout:
        return Layout()  # causal attention, positions 0..T-1

    def allowed_inputs(self) -> torch.Tensor:
        return torch.ones(self.seq_len, self.seq_len, dtype=torch.bool, device=self.device).tril()

    # ----- training data --------------------------------------------------------------------------
    def global_starts(self, step: int, global_batch: int) -> np.ndarray:
        """Window start offsets (into the training tokens) of global batch `step`."""
        return window_starts(self.seed, step, global_batch, self.store.n_tokens("train"), self.seq_len + 1)

    def train_batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1,
                    model: torch.nn.Module | None = None) -> Batch:
        starts = self.global_starts(step, batch_size * world_size)[rank * batch_size:(rank + 1) * batch_size]
        windows = torch.from_numpy(gather_windows(self.store.tokens("train"), starts, self.seq_len + 1))
        windows = windows.to(self.device, non_blocking=True)
        inputs, targets = windows[:, :-1], windows[:, 1:]
        return Batch(inputs, targets, torch.ones_like(targets, dtype=torch.bool))

    def log_metrics(self, logits: torch.Tensor, batch: Batch) -> dict[str, float]:
        return {"accuracy": float((logits.argmax(-1) == batch.targets).float().mean())}

    # ----- evaluation -----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, n_samples: int | None = None, seed: int | None = None) -> dict[str, Any]:
        """Metrics on the validation split (interfere.tasks.text.metrics), over n_samples windows of seq_len
        targets (a seeded subset, the same for every checkpoint); n_samples=None or 0: the whole split."""
        from interfere.model.modes import eval_mode, unwrap

        n_samples = self.eval_cfg["samples"] if n_samples is None else n_samples
        n_samples = int(n_samples) if n_samples else None
        seed = int(self.eval_cfg["seed"] if seed is None else seed)
        tokens = self.store.tokens("val")
        chunks = eval_chunks(len(tokens), self.seq_len, n_samples, seed)
        if not chunks:
            raise ConfigError("the validation split is empty: raise task.val_fraction")
        bs = max(int(self.eval_cfg["batch_size"]), 1)
        self.attach(model)
        sums = M.LMSums()
        with eval_mode(unwrap(model)) as m:
            device = next(m.parameters()).device
            by_length: dict[int, list[int]] = {}
            for start, length in chunks:
                by_length.setdefault(length, []).append(start)
            for length, starts in by_length.items():
                for i in range(0, len(starts), bs):
                    w = torch.from_numpy(gather_windows(tokens, np.asarray(starts[i:i + bs]), length)).to(device)
                    logits = m(w[:, :-1])
                    sums = sums.add(M.batch_sums(logits, w[:, 1:], self._byte_lengths))
        out = M.summarize(sums)
        out["n_windows"] = len(chunks)
        return out

    # ----- generation and artifacts ---------------------------------------------------------------
    def complete(self, model: torch.nn.Module, prompt: str | None = None, max_new_tokens: int | None = None,
                 preset: str | None = None, seed: int | None = None, stop_at_eot: bool = False, **kwargs) -> str:
        """The model's continuation of `prompt` (read as the start of a document), as text.

        kwargs: strategy, temperature, top_k, top_p, use_cache (see interfere.model.generate.generate).
        """
        from interfere.model.generate import generate_text

        g = self.gen_cfg
        self.attach(model)
        preset = g["preset"] if preset is None and not kwargs.get("strategy") else preset
        return generate_text(model, self.tokenizer, g["prompt"] if prompt is None else prompt,
                             int(g["max_new_tokens"] if max_new_tokens is None else max_new_tokens),
                             stop_at_eot=stop_at_eot, preset=preset, seed=g["seed"] if seed is None else seed,
                             **kwargs)

    def artifacts(self, model: torch.nn.Module, step: int, out_dir: Path) -> list[Path]:
        """A text sample: out_dir/samples/step_{step:06d}.txt (prompt + continuation)."""
        out_dir = Path(out_dir)
        prompt = self.gen_cfg["prompt"] or ""
        text = prompt + self.complete(model, prompt)
        path = out_dir / "samples" / f"step_{step:06d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + ("\n" if not text.endswith("\n") else ""), encoding="utf-8")
        return [path]

    def describe(self) -> dict[str, Any]:
        """What the data is: corpus, split and tokenizer sizes (for logs and reports)."""
        meta = self.store.meta
        return {"corpus": self.corpus.source, "tokenizer": self.tokenizer.kind, "vocab_size": self.vocab_size,
                "documents": meta["documents"], "tokens": meta["tokens"], "cache": str(self.store.dir)}
