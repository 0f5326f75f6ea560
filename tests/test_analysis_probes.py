"""Linear probes (interfere.analysis.probes): a planted linear feature is found, noise is not."""

import pytest
import torch

from model_helpers import tiny
from toy_task import one_thread  # noqa: F401 (autouse fixture)

from interfere.analysis.probes import logistic_probe, probe_layers, ridge_probe


def data(n=2000, d=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    w = torch.randn(d, generator=g)
    return X, X @ w, torch.randn(n, generator=g)


def test_ridge_recovers_a_planted_feature_and_nothing_in_noise():
    X, y, noise = data()
    planted = ridge_probe(X, y + 0.1 * noise)
    assert planted.r2 > 0.95 and planted.n_test == 500
    empty = ridge_probe(X, noise)
    assert empty.r2 < 0.1 and empty.r2_train < 0.1
    multi = ridge_probe(X, torch.stack([y, 2 * y], 1))  # several targets at once
    assert multi.r2 > 0.95


def test_logistic_probe_auc_and_accuracy():
    X, y, noise = data()
    found = logistic_probe(X, (y > 0).long())
    assert found.auc > 0.95 and found.accuracy > 0.9 and 0.4 < found.chance < 0.6
    chance = logistic_probe(X, (noise > 0).long())
    assert 0.4 < chance.auc < 0.6
    three = logistic_probe(X, torch.bucketize(y, torch.tensor([-2.0, 2.0])))
    assert three.auc > 0.9
    with pytest.raises(ValueError, match="single class"):
        logistic_probe(X, torch.zeros(len(X), dtype=torch.long))


def test_groups_keep_sequences_on_one_side():
    from interfere.analysis.probes import _split

    groups = torch.arange(10).repeat_interleave(7).numpy()
    train, test = _split(70, 0.3, 0, groups)
    assert set(groups[train]).isdisjoint(groups[test]) and len(set(groups[test])) == 3


def test_probe_layers_finds_a_feature_planted_in_the_residual_stream():
    model = tiny()
    tokens = torch.randint(0, 20, (48, 12))
    direction = torch.randn(model.cfg.d_model)
    target = model.W_E.detach()[tokens] @ direction  # linear in the embedding, so in every residual stream
    curve = probe_layers(model, tokens, target, kind="ridge", hook="resid_pre", target_name="planted")
    assert curve.layers == [0, 1] and curve.scores[0].r2 > 0.95
    noise = probe_layers(model, tokens, torch.randn(48, 12), kind="ridge", hook="resid_post", target_name="noise")
    assert max(noise.values()) < 0.1
    out = curve.to_json()
    assert out["best_layer"] in (0, 1) and out["target"] == "planted"
    cls = probe_layers(model, tokens, (tokens % 2), kind="logistic", hook="blocks.{layer}.hook_resid_post",
                       layers=[1], mask=torch.arange(12)[None].expand(48, -1) > 0)
    assert cls.layers == [1] and cls.scores[0].auc > 0.9
