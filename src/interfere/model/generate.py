"""Autoregressive generation: greedy, temperature sampling, top-k, top-p, presets, with a KV cache.

With `use_cache=True` the prompt runs through the model once, filling an `interfere.model.KVCache`, then
each new token runs alone ([B, 1]) against the cached keys and values. Without it the whole sequence
reruns at every step. Both see exactly the same context, so greedy outputs agree.

Context: a model sees at most `cfg.n_ctx` tokens. Once prompt + output would exceed that (or the prompt
alone does), generation continues with an uncached sliding window over the last n_ctx tokens, exactly
as the uncached path does; so cached and uncached outputs stay equal at any length.

Filters apply in the order temperature -> top-k -> top-p (as Hugging Face does). top-p keeps the smallest
set of most likely tokens whose probability reaches p (the token that crosses p is kept; the top token
always is).
"""

from __future__ import annotations

from typing import Any

import torch

STRATEGIES = ("greedy", "sample", "top_k", "top_p")
PRESETS: dict[str, dict[str, Any]] = {
    # few, likely continuations: good for checking what the model has learnt
    "precise": {"strategy": "top_k", "temperature": 0.7, "top_k": 10, "top_p": None},
    # the usual default for readable samples
    "balanced": {"strategy": "top_p", "temperature": 0.9, "top_k": None, "top_p": 0.9},
    # nearly the model's own distribution
    "creative": {"strategy": "top_p", "temperature": 1.1, "top_k": None, "top_p": 0.98},
}


def resolve(strategy: str | None = None, temperature: float | None = None, top_k: int | None = None,
            top_p: float | None = None, preset: str | None = None) -> dict[str, Any]:
    """The sampling settings: a preset's values, overridden by any argument given (not None)."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    out = dict(PRESETS[preset]) if preset else {"strategy": "greedy", "temperature": 1.0, "top_k": None, "top_p": None}
    given = {"strategy": strategy, "temperature": temperature, "top_k": top_k, "top_p": top_p}
    out.update({k: v for k, v in given.items() if v is not None})
    s = out["strategy"]
    if s not in STRATEGIES:
        raise ValueError(f"unknown strategy {s!r}; use one of {', '.join(STRATEGIES)}")
    if s == "top_k" and out["top_k"] is None:
        raise ValueError("strategy='top_k' needs top_k")
    if s == "top_p" and out["top_p"] is None:
        raise ValueError("strategy='top_p' needs top_p")
    if out["top_k"] is not None and int(out["top_k"]) < 1:
        raise ValueError(f"top_k={out['top_k']}: it must be >= 1")
    if out["top_p"] is not None and not 0.0 < float(out["top_p"]) <= 1.0:
        raise ValueError(f"top_p={out['top_p']}: it must be in (0, 1]")
    if s != "greedy" and not float(out["temperature"]) > 0.0:
        raise ValueError(f"temperature={out['temperature']}: it must be > 0 (use strategy='greedy' for argmax)")
    return out


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """logits [..., V] with everything outside the top-k / top-p set at -inf."""
    logits = logits.float()
    if top_k is not None and int(top_k) < logits.shape[-1]:
        kth = logits.topk(int(top_k), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and float(top_p) < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # mass of the more likely tokens
        drop_sorted = before >= float(top_p)
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_token_probs(logits: torch.Tensor, strategy: str = "sample", temperature: float = 1.0,
                     top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """The distribution the next token is drawn from, [..., V] (one-hot at the argmax for greedy).

    Every sampling strategy applies the filters it is given: `sample` with neither is plain temperature
    sampling; `top_k` / `top_p` require theirs (see `resolve`).
    """
    if strategy == "greedy":
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    return filter_logits(logits.float() / float(temperature), top_k, top_p).softmax(-1)


def pick(logits: torch.Tensor, settings: dict[str, Any], generator: torch.Generator | None = None) -> torch.Tensor:
    """Next tokens [B] from last-position logits [B, V]."""
    if settings["strategy"] == "greedy":
        return logits.argmax(-1)
    s = settings
    probs = next_token_probs(logits, s["strategy"], s["temperature"], s["top_k"], s["top_p"])
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


@torch.no_grad()
def generate(model: torch.nn.Module, prompt_tokens, max_new_tokens: int, strategy: str | None = None,
             temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
             seed: int | None = None, use_cache: bool = True, eot_id: int | None = None, preset: str | None = None,
             model_kwargs: dict[str, Any] | None = None) -> torch.Tensor:
    """Prompt + up to max_new_tokens new tokens: [B, T + n] (a 1-D prompt gives B = 1).

    strategy: greedy | sample | top_k | top_p (default greedy, or the preset's); `preset` fills in
    strategy/temperature/top_k/top_p, and explicit arguments override it. seed makes sampling reproducible.
    eot_id: a row that produces it is finished (padded with eot_id); generation stops when all are.
    """
    from interfere.model import KVCache
    from interfere.model.modes import eval_mode, unwrap

    settings = resolve(strategy, temperature, top_k, top_p, preset)
    m = unwrap(model)
    device = next(m.parameters()).device
    tokens = torch.as_tensor(prompt_tokens, dtype=torch.long, device=device)
    if tokens.dim() == 1:
        tokens = tokens[None]
    if tokens.dim() != 2 or tokens.shape[1] == 0:
        raise ValueError(f"prompt_tokens must be [T] or [B, T] with T >= 1, got shape {tuple(tokens.shape)}")
    n_ctx = int(m.cfg.n_ctx)
    kwargs = dict(model_kwargs or {})
    generator = None
    if seed is not None and settings["strategy"] != "greedy":
        generator = torch.Generator(device=device).manual_seed(int(seed))
    cache = KVCache() if use_cache else None
    finished = torch.zeros(tokens.shape[0], dtype=torch.bool, device=device)

    with eval_mode(m):
        for _ in range(int(max_new_tokens)):
            L = tokens.shape[1]
            if cache is not None and L > n_ctx:
                cache = None  # the context is full: sliding window (uncached) from here on
            if cache is not None:
                logits = m(tokens[:, cache.length:], kv_cache=cache, **kwargs)[:, -1]
            else:
                logits = m(tokens[:, -n_ctx:], **kwargs)[:, -1]
            nxt = pick(logits, settings, generator)
            if eot_id is not None:
                nxt = torch.where(finished, torch.full_like(nxt, eot_id), nxt)
                finished |= nxt == eot_id
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            if eot_id is not None and bool(finished.all()):
                break
    return tokens


def generate_text(model: torch.nn.Module, tokenizer, prompt: str = "", max_new_tokens: int = 200,
                  stop_at_eot: bool = False, **kwargs) -> str:
    """The continuation (text) of `prompt`, which is read as the start of a document: [eot] + its tokens."""
    ids = [tokenizer.eot_id, *tokenizer.encode(prompt)]
    out = generate(model, ids, max_new_tokens, eot_id=tokenizer.eot_id if stop_at_eot else None, **kwargs)
    new = out[0, len(ids):].tolist()
    if stop_at_eot and tokenizer.eot_id in new:
        new = new[:new.index(tokenizer.eot_id)]
    return tokenizer.decode(new)

