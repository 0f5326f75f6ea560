"""The subject: the frozen language model a lens explains, read and patched at one residual-stream hook.

A subject is a text run of ours (`run=<id>`: a HookedGPT and its TextTask) or a pretrained model
(`model=smollm2`: a TransformerBridge, with Shakespeare tokenised by its own tokenizer). Both speak
TransformerLens' hook names, so reading `blocks.{L}.hook_resid_post` and patching it are the same code.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from interfere.errors import ConfigError


def resid_hook(layer: int) -> str:
    """The hook a lens reads and patches: the residual stream after block `layer`."""
    return f"blocks.{layer}.hook_resid_post"


def run_embeds(model: nn.Module, embeds: torch.Tensor, read: str | None = None):
    """(logits [B, T, V], the residual at hook `read` [B, T, d] or None) of `model` fed input embeddings
    [B, T, d] in place of its token embeddings (a hook swaps them in; positions are the model's own)."""
    captured = {}

    def put(act, hook):
        return embeds.to(act.dtype)

    def get(act, hook):
        captured["x"] = act
        return act

    hooks = [("hook_embed", put)] + ([(read, get)] if read else [])
    dummy = torch.zeros(embeds.shape[:2], dtype=torch.long, device=embeds.device)
    logits = model.run_with_hooks(dummy, fwd_hooks=hooks)
    return logits, captured.get("x")


def embedding_matrix(model: nn.Module) -> torch.Tensor:
    """[V, d] token embeddings (HookedGPT and TransformerBridge both expose W_E)."""
    return model.W_E


@dataclass
class Subject:
    """A frozen model, its tokenizer and the text task whose pre-tokenised stream the lens reads."""

    model: nn.Module
    spec: dict[str, Any]  # how to load it again (written into the dump's manifest)
    tokenizer: Any  # encode(str) -> ids, decode(ids) -> str
    text: Any  # a TextTask: .store.tokens("train" | "val")

    @property
    def d_model(self) -> int:
        return int(self.model.cfg.d_model)

    @property
    def n_layers(self) -> int:
        return int(self.model.cfg.n_layers)

    @property
    def d_vocab(self) -> int:
        return int(embedding_matrix(self.model).shape[0])

    @property
    def device(self) -> torch.device:
        return embedding_matrix(self.model).device

    def check_layer(self, layer: int) -> None:
        if not 0 <= layer < self.n_layers:
            raise ConfigError(f"layer={layer}: the subject has layers 0..{self.n_layers - 1}")

    @torch.no_grad()
    def activations(self, tokens: torch.Tensor, positions: torch.Tensor, layer: int) -> torch.Tensor:
        """[B, d] residual after block `layer` at each row's position."""
        tokens = tokens[:, :int(positions.max()) + 1]
        captured = {}

        def get(act, hook):
            captured["x"] = act
            return act

        self.model.run_with_hooks(tokens, fwd_hooks=[(resid_hook(layer), get)])
        return captured["x"][torch.arange(len(tokens), device=tokens.device), positions].float()

    def logits_at(self, tokens: torch.Tensor, positions: torch.Tensor, layer: int,
                  replace: torch.Tensor | None = None) -> torch.Tensor:
        """[B, V] next-token logits at each row's position p (see patched_logits)."""
        logits = self.patched_logits(tokens, positions, layer, replace)
        return logits[torch.arange(len(logits), device=logits.device), positions].float()

    def patched_logits(self, tokens: torch.Tensor, positions: torch.Tensor, layer: int,
                       replace: torch.Tensor | None = None) -> torch.Tensor:
        """[B, max(p) + 1, V] logits with the residual after block `layer` at exactly each row's position p
        replaced by `replace` [B, d] (gradients flow into it); unpatched when replace is None. The window is
        cut after the last p: later tokens cannot change what is read at p."""
        tokens = tokens[:, :int(positions.max()) + 1]
        hooks = []
        if replace is not None:
            at = torch.zeros(tokens.shape, dtype=torch.bool, device=tokens.device)
            at[torch.arange(len(tokens), device=tokens.device), positions] = True

            def patch(act, hook):
                return torch.where(at[..., None], replace[:, None, :].to(act.dtype), act)

            hooks = [(resid_hook(layer), patch)]
        return self.model.run_with_hooks(tokens, fwd_hooks=hooks)

    def trainable_copy(self) -> nn.Module:
        """A clone of the model for a lens's decoder or encoder, with gradients on."""
        if self.spec["kind"] == "pretrained":
            from interfere.model.pretrained import load_pretrained

            clone = load_pretrained(self.spec["model"], device=self.device)
        else:
            clone = copy.deepcopy(self.model)
        for p in clone.parameters():
            p.requires_grad_(True)
        return clone


def _freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_subject(spec: dict[str, Any], device="cpu") -> Subject:
    """The subject a spec names: {"kind": "run", "ckpt": <dir>} or {"kind": "pretrained", "model": "smollm2"}."""
    if spec.get("kind") == "pretrained":
        return _pretrained(spec["model"], device)
    if spec.get("kind") == "run":
        return _run(spec["ckpt"], device)
    raise ConfigError(f"unknown subject {spec!r}: give run=<id> or model=smollm2")


def subject_spec(run: str | None = None, model: str | None = None, runs_dir: str | Path = "runs") -> dict[str, Any]:
    """The spec of `run=<id>` (resolved to its newest checkpoint) or `model=<name>`."""
    if run is not None and model is not None:
        raise ConfigError("give run=<id> or model=<name>, not both")
    if model is not None:
        from interfere.model.pretrained import spec

        return {"kind": "pretrained", "model": spec(model).name}
    from interfere.train.runs import resolve_checkpoint, run_dir_of

    ckpt = resolve_checkpoint(run, runs_dir)
    return {"kind": "run", "run": run_dir_of(ckpt).name, "ckpt": str(ckpt)}


def _run(ckpt: str, device) -> Subject:
    import interfere
    from interfere.tasks.text import TextTask

    model, task = interfere.load(ckpt, device=device)
    if not isinstance(task, TextTask):
        raise ConfigError(f"{ckpt} is a {getattr(task, 'name', type(task).__name__)} run: a lens needs a text run "
                          "(e.g. interfere train exp=shakespeare)")
    task.attach(model)
    run = Path(ckpt).resolve().parent.parent.name
    return Subject(_freeze(model), {"kind": "run", "run": run, "ckpt": str(Path(ckpt).resolve())},
                   task.tokenizer, task)


def _pretrained(name: str, device) -> Subject:
    from interfere.model.pretrained import cache_dir, convert, load_pretrained
    from interfere.tasks.text import TextTask

    convert(name)
    model = load_pretrained(name, device=device)
    task = TextTask(corpus={"source": "shakespeare"}, tokenizer={"kind": "bpe", "path": str(_tokenizer_dir(cache_dir(name)))},
                    seq_len=64, device=device)
    return Subject(_freeze(model), {"kind": "pretrained", "model": name}, task.tokenizer, task)


def _tokenizer_dir(model_dir: Path) -> Path:
    """The pretrained model's tokenizer.json saved as an interfere tokenizer (once), for the text task."""
    from tokenizers import Tokenizer as HFTok

    from interfere.tasks.text.tokenizer import META, HFTokenizer

    target = model_dir / "interfere_tokenizer"
    if not (target / META).is_file():
        tok = HFTok.from_file(str(model_dir / "tokenizer.json"))
        HFTokenizer(tok, "bpe", eot_id=tok.token_to_id("<|endoftext|>") or 0).save(target)
    return target
