"""Scoring a lens on held-out activations (the dump's val split), against baselines.

For each candidate reconstruction A_hat of the activation A at (layer L, position p):
  kl   mean over examples of KL(P_orig(A) || P_orig(A_hat)) at p (nats); 0 is perfect
  fve  1 - sum_j var(A - A_hat)_j / sum_j var(A)_j over the examples; 1 is perfect, 0 is the mean's
Candidates: the lens (greedy explanation, encoder), and the baselines
  zero               A_hat = 0
  mean               the mean training activation
  resample           the activation of another window (the dump's paired A')
  shuffled           the encoder on the lens's explanation with its tokens in a random order
  last_tokens        the encoder on the last k input tokens up to p themselves (words the subject read)
  untrained          a freshly initialised lens (when one is given)
Explanation statistics: top_token_freq (the commonest token's share of all explanation tokens; near 1
is collapse) and distinct_share (distinct explanations / examples).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from interfere.lens.losses import kl_from_logits
from interfere.model.modes import eval_mode, unwrap

BASELINES = ("zero", "mean", "resample", "shuffled", "last_tokens", "untrained")


@dataclass
class LensEval:
    metrics: dict[str, Any]  # flat: lens_kl, lens_fve, <baseline>_kl, <baseline>_fve, top_token_freq, ...
    samples: list[dict[str, Any]] = field(default_factory=list)


def fve(acts: torch.Tensor, a_hat: torch.Tensor) -> float:
    """1 - sum_j var(A - A_hat)_j / sum_j var(A)_j."""
    return 1.0 - float((acts - a_hat).var(0).sum() / acts.var(0).sum())


def pick_rows(n: int, n_samples: int | None, seed: int) -> torch.Tensor:
    if not n_samples or n_samples >= n:
        return torch.arange(n)
    return torch.from_numpy(np.sort(np.random.default_rng([seed, 0x1E45]).choice(n, n_samples, replace=False)))


def last_tokens(tokens: torch.Tensor, positions: torch.Tensor, k: int) -> torch.Tensor:
    """[B, k] the input tokens at p-k+1..p (the first one repeated where p < k-1)."""
    idx = (positions[:, None] - k + 1 + torch.arange(k, device=tokens.device)).clamp(min=0)
    return tokens.gather(1, idx)


@torch.no_grad()
def evaluate_lens(task, model, n_samples: int | None = None, seed: int | None = None, untrained=None,
                  verbose: int = 0) -> LensEval:
    cfg = task.eval_cfg
    n_samples = int(cfg.get("samples", 512) if n_samples is None else n_samples)
    seed = int(cfg.get("seed", 1234) if seed is None else seed)
    rows = pick_rows(len(task.val_set), n_samples, seed)
    gen = torch.Generator().manual_seed(seed)
    bs = int(cfg.get("batch_size", 64))
    kls: dict[str, list] = {}
    hats: dict[str, list] = {}
    acts_all, ids_all, first = [], [], None
    with contextlib.ExitStack() as stack:
        lens = stack.enter_context(eval_mode(unwrap(model)))
        fresh = stack.enter_context(eval_mode(unwrap(untrained))) if untrained is not None else None
        for i in range(0, len(rows), bs):
            batch = task.val_set.rows(rows[i:i + bs].to(task.device))
            orig = task.subject.logits_at(batch.tokens, batch.positions, task.layer)
            cands, ids = _candidates(task, lens, fresh, batch, gen)
            for name, a_hat in cands.items():
                patched = task.subject.logits_at(batch.tokens, batch.positions, task.layer, replace=a_hat)
                kls.setdefault(name, []).append(kl_from_logits(orig, patched).cpu())
                hats.setdefault(name, []).append(a_hat.cpu())
            acts_all.append(batch.acts.cpu())
            ids_all.append(ids.cpu())
            if first is None:
                first = (batch, ids, orig, cands["lens"])
    acts, ids = torch.cat(acts_all), torch.cat(ids_all)
    metrics: dict[str, Any] = {"n": len(acts), "layer": task.layer, "length": task.length}
    for name in kls:
        metrics[f"{name}_kl"] = float(torch.cat(kls[name]).mean())
        metrics[f"{name}_fve"] = fve(acts, torch.cat(hats[name]))
    from interfere.lens.task import top_token_frequency

    metrics["top_token_freq"] = top_token_frequency(ids)
    metrics["distinct_share"] = len({tuple(r) for r in ids.tolist()}) / len(ids)
    samples = _samples(task, first, verbose) if verbose and first is not None else []
    return LensEval(metrics, samples)


def _candidates(task, lens, fresh, batch, gen) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    one_hot, _, a_hat = lens(batch.acts)
    B, k, V = one_hot.shape
    order = torch.stack([torch.randperm(k, generator=gen) for _ in range(B)]).to(one_hot.device)
    shuffled = one_hot.gather(1, order[..., None].expand(-1, -1, V))
    own = F.one_hot(last_tokens(batch.tokens, batch.positions, k), V).to(one_hot.dtype)
    cands = {"lens": a_hat, "zero": torch.zeros_like(a_hat), "mean": task.mean_act.expand_as(a_hat),
             "resample": batch.paired, "shuffled": lens.encoder(shuffled), "last_tokens": lens.encoder(own)}
    if fresh is not None:
        cands["untrained"] = fresh(batch.acts)[2]
    return cands, one_hot.argmax(-1)


def _samples(task, first, n: int) -> list[dict[str, Any]]:
    """Input text with the token at p marked, the explanation, top predictions with A and with A_hat."""
    batch, ids, orig, a_hat = first
    tok = task.subject.tokenizer
    patched = task.subject.logits_at(batch.tokens, batch.positions, task.layer, replace=a_hat)
    out = []
    for r in range(min(n, len(ids))):
        p = int(batch.positions[r])
        toks = batch.tokens[r].tolist()
        out.append({
            "text": tok.decode(toks[max(0, p - 24):p]) + "[[" + tok.decode([toks[p]]) + "]]",
            "position": p,
            "explanation": [tok.decode([t]) for t in ids[r].tolist()],
            "top_original": _top(tok, orig[r]),
            "top_reconstructed": _top(tok, patched[r]),
            "kl": float(kl_from_logits(orig[r:r + 1], patched[r:r + 1])),
        })
    return out


def _top(tok, logits: torch.Tensor, k: int = 5) -> list[list]:
    probs = logits.float().softmax(-1)
    p, i = probs.topk(k)
    return [[tok.decode([int(t)]), round(float(q), 3)] for q, t in zip(p, i)]
