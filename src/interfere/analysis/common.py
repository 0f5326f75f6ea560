"""What every analysis tool needs from a model, whichever kind it is.

The tools take any model with TransformerLens' surface: `cfg` (n_layers, n_heads, d_model,
normalization_type, ...), `run_with_cache`, `run_with_hooks`, `ln_final`, `W_U` and TransformerLens hook
names. That is a `HookedGPT` trained here, or a pretrained model wrapped in a `TransformerBridge`
(`interfere.model.pretrained`). Nothing here knows about tasks.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from interfere.model.modes import eval_mode as _eval_mode


def n_layers(model) -> int:
    return int(model.cfg.n_layers)


def n_heads(model) -> int:
    return int(model.cfg.n_heads)


def device_of(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device(getattr(model.cfg, "device", None) or "cpu")


def has_mlp(model) -> bool:
    return not bool(getattr(model.cfg, "attn_only", False))


# eval() + no_grad, then the previous mode (TransformerLens' patching and lens helpers insist on eval)
eval_mode = _eval_mode


def tokenizer_of(model):
    return getattr(model, "tokenizer", None)


def bos_id(model) -> int | None:
    """The BOS id the model expects at position 0, or None (models trained here without a tokenizer)."""
    tok = tokenizer_of(model)
    if tok is None or not getattr(model.cfg, "default_prepend_bos", False):
        return None
    return getattr(tok, "bos_token_id", None)


def to_tokens(model, prompt: Any, prepend_bos: bool | None = None) -> torch.Tensor:
    """[1, T] (or [B, T]) token ids on the model's device from a string, a list of ids or a tensor."""
    if isinstance(prompt, torch.Tensor):
        tokens = prompt if prompt.dim() == 2 else prompt[None]
    elif isinstance(prompt, (list, tuple)) and prompt and all(isinstance(t, int) for t in prompt):
        tokens = torch.tensor([list(prompt)])
    elif isinstance(prompt, str):
        if tokenizer_of(model) is None:
            raise ValueError("this model has no tokenizer: give token ids (e.g. prompt=3,17,5) instead of text")
        kwargs = {} if prepend_bos is None else {"prepend_bos": prepend_bos}
        tokens = model.to_tokens(prompt, **kwargs)
    else:
        raise TypeError(f"cannot turn {type(prompt).__name__} into tokens")
    return tokens.to(device_of(model)).long()


def token_str(model, token_id: int) -> str:
    """A token as text (its id in angle brackets when the model has no tokenizer)."""
    tok = tokenizer_of(model)
    if tok is None:
        return f"<{int(token_id)}>"
    try:
        return tok.decode([int(token_id)])
    except Exception:  # a task tokenizer with another signature
        return f"<{int(token_id)}>"


def token_strs(model, ids: Sequence[int] | torch.Tensor) -> list[str]:
    if isinstance(ids, torch.Tensor):
        ids = ids.reshape(-1).tolist()
    return [token_str(model, i) for i in ids]


def single_token(model, value: Any) -> int:
    """A token id from an int, a digit string ("17") or a one-token string (" Paris")."""
    if isinstance(value, (int,)) or (isinstance(value, torch.Tensor) and value.numel() == 1):
        return int(value)
    text = str(value)
    if text.strip().lstrip("-").isdigit() and tokenizer_of(model) is None:
        return int(text)
    if tokenizer_of(model) is None:
        raise ValueError(f"this model has no tokenizer: give the answer as a token id, not {text!r}")
    ids = model.to_tokens(text, prepend_bos=False)[0].tolist() if _takes_prepend_bos(model) else \
        model.to_tokens(text)[0].tolist()
    if len(ids) != 1:
        raise ValueError(f"{text!r} is {len(ids)} tokens ({ids}); the answer must be a single token")
    return int(ids[0])


def _takes_prepend_bos(model) -> bool:
    import inspect

    try:
        return "prepend_bos" in inspect.signature(model.to_tokens).parameters
    except (TypeError, ValueError):
        return False


def unembed(model, normalized: torch.Tensor) -> torch.Tensor:
    """normalized @ W_U (+ b_U when the model has one): the logits of vectors already through ln_final."""
    logits = normalized @ model.W_U.to(normalized.dtype)
    b_U = getattr(model, "b_U", None)
    if isinstance(b_U, torch.Tensor):
        logits = logits + b_U.to(logits.dtype)
    return logits


def apply_final_norm(model, resid: torch.Tensor) -> torch.Tensor:
    """model.ln_final on vectors of any leading shape, statistics recomputed per vector (the logit lens)."""
    if getattr(model.cfg, "normalization_type", None) is None:
        return resid
    shape = resid.shape
    out = model.ln_final(resid.reshape(1, -1, shape[-1]))
    return out.reshape(shape)


def final_norm_weight(model) -> torch.Tensor | None:
    """The elementwise weight of ln_final if it is not folded into W_U (HookedGPT), else None.

    A TransformerBridge in compatibility mode folds it into W_U (its ln_final then has no weight or one
    of ones); HookedGPT keeps it as `ln_final.w`. Direct logit attribution multiplies it into the
    unembedding directions so that the components sum to the model's own logits.
    """
    ln = getattr(model, "ln_final", None)
    for name in ("w", "weight"):
        w = getattr(ln, name, None)
        if isinstance(w, torch.Tensor) and w.dim() == 1:
            return None if torch.all(w == 1) else w
    return None


def final_norm_bias(model) -> torch.Tensor | None:
    ln = getattr(model, "ln_final", None)
    b = getattr(ln, "b", None)
    if b is None:
        b = getattr(ln, "bias", None)
    return b if isinstance(b, torch.Tensor) and b.dim() == 1 and bool(torch.any(b != 0)) else None


def names_filter(*suffixes: str):
    """A run_with_cache names_filter keeping the hooks whose names end with any of the suffixes."""
    return lambda name: name.endswith(suffixes)


def head_label(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


def resolve_positions(positions: Any, seq_len: int) -> list[int]:
    """Positions as non-negative indices: None -> [last], ints or "a,b,-1" (negative counts from the end)."""
    if positions is None or positions == "":
        return [seq_len - 1]
    if isinstance(positions, str):
        if positions == "all":
            return list(range(seq_len))
        positions = [int(p) for p in positions.split(",") if p.strip()]
    if isinstance(positions, int):
        positions = [positions]
    out = []
    for p in positions:
        q = int(p) + seq_len if int(p) < 0 else int(p)
        if not 0 <= q < seq_len:
            raise ValueError(f"position {p} is outside a sequence of {seq_len} tokens")
        out.append(q)
    return out
