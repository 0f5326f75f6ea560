"""Linear probes: is a quantity linearly readable from an activation, layer by layer?

Fit on one part of the examples, score on the rest (held-out; by whole sequence when `groups` is given,
so that tokens of one sequence never sit on both sides). Built on scikit-learn:

- ridge (regression): standardised features, `RidgeCV` picks the penalty among 10^-3 .. 10^4 by
  leave-one-out on the training part; the score is the held-out R^2 (1 = perfect, 0 = no better than
  predicting the mean, negative = worse).
- logistic (classification): standardised features, `LogisticRegression` (L2, C=1); held-out ROC AUC
  (one-vs-rest macro average for more than two classes) and accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from interfere.analysis.common import eval_mode, n_layers, to_tokens

KINDS = ("ridge", "logistic")


@dataclass
class ProbeScore:
    kind: str
    n_train: int
    n_test: int
    r2: float | None = None  # ridge: held-out R^2
    r2_train: float | None = None
    alpha: float | None = None
    auc: float | None = None  # logistic: held-out ROC AUC
    accuracy: float | None = None  # logistic: held-out accuracy
    accuracy_train: float | None = None
    chance: float | None = None  # logistic: accuracy of always answering the commonest class

    @property
    def score(self) -> float:
        """The headline number: R^2 for ridge, AUC for logistic."""
        return float(self.r2 if self.kind == "ridge" else self.auc)

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def _split(n: int, test_frac: float, seed: int, groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if groups is None:
        order = rng.permutation(n)
        n_test = max(1, int(round(n * test_frac)))
        return order[n_test:], order[:n_test]
    uniq = rng.permutation(np.unique(groups))
    n_test = max(1, int(round(len(uniq) * test_frac)))
    test = np.isin(groups, uniq[:n_test])
    return np.nonzero(~test)[0], np.nonzero(test)[0]


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def ridge_probe(X, y, test_frac: float = 0.25, seed: int = 0, groups=None,
                alphas=tuple(10.0 ** np.arange(-3, 5))) -> ProbeScore:
    """Held-out R^2 of a ridge regression from X [N, d] to y [N] or [N, k]."""
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = _numpy(X).reshape(len(X), -1), _numpy(y).astype(np.float64)
    train, test = _split(len(X), test_frac, seed, None if groups is None else _numpy(groups))
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=list(alphas)))
    model.fit(X[train], y[train])
    return ProbeScore(kind="ridge", n_train=len(train), n_test=len(test),
                      r2=float(r2_score(y[test], model.predict(X[test]))),
                      r2_train=float(r2_score(y[train], model.predict(X[train]))),
                      alpha=float(model[-1].alpha_))


def logistic_probe(X, y, test_frac: float = 0.25, seed: int = 0, groups=None, C: float = 1.0) -> ProbeScore:
    """Held-out AUC and accuracy of a logistic regression from X [N, d] to integer labels y [N]."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = _numpy(X).reshape(len(X), -1), _numpy(y).astype(np.int64).reshape(-1)
    train, test = _split(len(X), test_frac, seed, None if groups is None else _numpy(groups))
    classes = np.unique(y[train])
    if len(classes) < 2:
        raise ValueError("the training part holds a single class: a classifier needs two or more")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    model.fit(X[train], y[train])
    proba = model.predict_proba(X[test])
    keep = np.isin(y[test], classes)  # a class never seen in training cannot be scored
    yt, proba = y[test][keep], proba[keep]
    if len(classes) == 2:
        auc = roc_auc_score(yt, proba[:, 1]) if len(np.unique(yt)) == 2 else float("nan")
    else:
        present = np.unique(yt)
        auc = roc_auc_score(yt, proba, multi_class="ovr", labels=classes) if len(present) == len(classes) else float("nan")
    counts = np.bincount(y[train] - y[train].min())
    return ProbeScore(kind="logistic", n_train=len(train), n_test=len(test), auc=float(auc),
                      accuracy=float(accuracy_score(y[test], model.predict(X[test]))),
                      accuracy_train=float(accuracy_score(y[train], model.predict(X[train]))),
                      chance=float(counts.max() / counts.sum()))


def hook_name(hook: str, layer: int) -> str:
    """"resid_post" -> blocks.{layer}.hook_resid_post (TransformerLens' short names), or a "{layer}" template."""
    if "{layer}" in hook:
        return hook.format(layer=layer)
    from transformer_lens.utilities import get_act_name

    return get_act_name(hook, layer)


@torch.no_grad()
def collect(model, tokens: Any, hook: str = "resid_post", layers: list[int] | None = None) -> dict[int, torch.Tensor]:
    """layer -> activations [B, T, ...] (float32, CPU) of `hook` at each layer, in one forward pass."""
    tokens = to_tokens(model, tokens)
    layers = list(range(n_layers(model))) if layers is None else layers
    names = {hook_name(hook, layer): layer for layer in layers}
    with eval_mode(model):
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    return {layer: cache[name].float().cpu() for name, layer in names.items()}


@dataclass
class ProbeCurve:
    hook: str
    kind: str
    target: str
    layers: list[int]
    scores: list[ProbeScore]
    extra: dict[str, Any] = field(default_factory=dict)

    def values(self) -> list[float]:
        return [s.score for s in self.scores]

    def best(self) -> tuple[int, ProbeScore]:
        i = int(np.nanargmax(self.values()))
        return self.layers[i], self.scores[i]

    def to_json(self) -> dict:
        layer, best = self.best()
        return {"hook": self.hook, "kind": self.kind, "target": self.target, "best_layer": layer,
                "best": best.to_json(),
                "layers": [{"layer": lay, **s.to_json()} for lay, s in zip(self.layers, self.scores)], **self.extra}


def probe_layers(model, tokens: Any, target: torch.Tensor, kind: str = "ridge", hook: str = "resid_post",
                 layers: list[int] | None = None, mask: torch.Tensor | None = None, test_frac: float = 0.25,
                 seed: int = 0, target_name: str = "target") -> ProbeCurve:
    """A probe per layer on `hook`, predicting target [B, T] (or [B, T, k] for ridge) at positions mask [B, T].

    Held-out examples are whole sequences (the batch index is the group).
    """
    if kind not in KINDS:
        raise ValueError(f"probe kind {kind!r}; use one of {KINDS}")
    tokens = to_tokens(model, tokens)
    B, T = tokens.shape
    acts = collect(model, tokens, hook, layers)
    mask = torch.ones(B, T, dtype=torch.bool) if mask is None else mask.cpu().bool()
    groups = torch.arange(B)[:, None].expand(B, T)[mask].numpy()
    y = target.cpu()[mask]
    fit = ridge_probe if kind == "ridge" else logistic_probe
    scores = []
    for layer, a in acts.items():
        X = a.reshape(B, T, -1)[mask]
        scores.append(fit(X, y, test_frac=test_frac, seed=seed, groups=groups))
    return ProbeCurve(hook=hook, kind=kind, target=target_name, layers=list(acts), scores=scores)
