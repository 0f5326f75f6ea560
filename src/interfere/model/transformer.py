"""HookedGPT: a decoder-only transformer with TransformerLens hook points, at nanoGPT speed.

Every activation passes through a `HookPoint` with TransformerLens' name (blocks.0.attn.hook_pattern,
...), so `run_with_cache`, `run_with_hooks` and `transformer_lens.patching` work unchanged. Work that
only analysis needs costs nothing until a hook asks for it: attention runs fused
(`scaled_dot_product_attention`) unless a hook or cache wants the scores or pattern, and norms run
fused unless a hook wants their scale.

Attention masks, positions and segment ids are data (a task's `Layout`, stored as buffers), not hooks.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformer_lens import ActivationCache, HookedRootModule
from transformer_lens.hook_points import HookPoint

from interfere.model.conditioning import FiLM, SegmentEmbedding
from interfere.model.config import ModelConfig
from interfere.model.cross_entropy import IGNORE, linear_cross_entropy
from interfere.model.positions import LearnedPositions, Rotary


class KVCache:
    """Keys and values of the positions already seen, per layer, for incremental decoding.

    Pass the same cache to successive calls: `model(prompt, kv_cache=c)`, then `model(next_token, kv_cache=c)`.
    Hooks fire for the new positions only.
    """

    def __init__(self):
        self.keys: dict[int, torch.Tensor] = {}  # layer -> [B, H, T_past, d_head], rotated
        self.values: dict[int, torch.Tensor] = {}
        self.length = 0

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if layer in self.keys:
            k, v = torch.cat([self.keys[layer], k], dim=2), torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v


class Norm(nn.Module):
    """Pre-norm LayerNorm or RMSNorm with TransformerLens' hook_scale / hook_normalized."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.rms, self.eps = cfg.normalization_type == "RMS", cfg.eps
        self.w = nn.Parameter(torch.ones(cfg.d_model))
        self.b = nn.Parameter(torch.zeros(cfg.d_model)) if cfg.use_bias and not self.rms else None
        self.hook_scale = HookPoint()  # [B, T, 1]
        self.hook_normalized = HookPoint()  # [B, T, d_model]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.hook_scale.has_hooks() or self.hook_normalized.has_hooks()):
            if torch.are_deterministic_algorithms_enabled() and torch.is_grad_enabled() and x.device.type == "cpu":
                return self._affine(self._normalize(x, None))
            return self._normalize(x, self.w, self.b)
        if not self.rms:
            x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        x = self.hook_normalized(x / scale)
        return self._affine(x)

    def _normalize(self, x: torch.Tensor, w: torch.Tensor | None, b: torch.Tensor | None = None) -> torch.Tensor:
        if self.rms:
            return F.rms_norm(x, x.shape[-1:], w, self.eps)
        return F.layer_norm(x, x.shape[-1:], w, b, self.eps)

    def _affine(self, x: torch.Tensor) -> torch.Tensor:
        # Outside the fused norm, the weight and bias gradients are sums split over features, never over rows,
        # so they do not depend on the thread count (the fused kernels' backward sums per-thread buffers);
        # one addcmul costs about what the fused affine does.
        return torch.addcmul(self.b, x, self.w) if self.b is not None else x * self.w


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.cfg, self.layer = cfg, layer
        H, dh = cfg.n_heads, cfg.d_head
        self.qkv = nn.Linear(cfg.d_model, 3 * H * dh, bias=cfg.use_bias)  # one matmul, as nanoGPT
        self.out = nn.Linear(H * dh, cfg.d_model, bias=cfg.use_bias)
        self.rotary = None
        if cfg.positional_embedding_type in ("rope", "rope2d"):
            axes = 2 if cfg.positional_embedding_type == "rope2d" else 1
            self.rotary = Rotary(cfg.rotary_dim, axes, cfg.rope_base, cfg.rope_period)
            self.hook_rot_q = HookPoint()  # [B, T, H, d_head]
            self.hook_rot_k = HookPoint()
        self.hook_q = HookPoint()  # [B, T, H, d_head]
        self.hook_k = HookPoint()
        self.hook_v = HookPoint()
        self.hook_attn_scores = HookPoint()  # [B, H, T_q, T_k], masked entries -inf
        self.hook_pattern = HookPoint()  # [B, H, T_q, T_k]
        self.hook_z = HookPoint()  # [B, T, H, d_head]
        self.hook_result = HookPoint()  # [B, T, H, d_model], only when cfg.use_attn_result

    # TransformerLens' weight views: W_Q [H, d_model, d_head], W_O [H, d_head, d_model], b_Q [H, d_head]
    def _qkv_weight(self, i: int) -> torch.Tensor:
        H, dh, d = self.cfg.n_heads, self.cfg.d_head, self.cfg.d_model
        return self.qkv.weight[i * H * dh:(i + 1) * H * dh].view(H, dh, d).transpose(1, 2)

    def _qkv_bias(self, i: int) -> torch.Tensor:
        H, dh = self.cfg.n_heads, self.cfg.d_head
        if self.qkv.bias is None:
            return torch.zeros(H, dh, device=self.qkv.weight.device, dtype=self.qkv.weight.dtype)
        return self.qkv.bias[i * H * dh:(i + 1) * H * dh].view(H, dh)

    W_Q = property(lambda self: self._qkv_weight(0))
    W_K = property(lambda self: self._qkv_weight(1))
    W_V = property(lambda self: self._qkv_weight(2))
    b_Q = property(lambda self: self._qkv_bias(0))
    b_K = property(lambda self: self._qkv_bias(1))
    b_V = property(lambda self: self._qkv_bias(2))
    W_O = property(lambda self: self.out.weight.T.reshape(self.cfg.n_heads, self.cfg.d_head, self.cfg.d_model))
    b_O = property(lambda self: self.out.bias if self.out.bias is not None
                   else torch.zeros(self.cfg.d_model, device=self.out.weight.device))

    def forward(self, x: torch.Tensor, rot: tuple | None, mask: torch.Tensor | None,
                kv_cache: KVCache | None = None) -> torch.Tensor:
        """x: [B, T, d_model], or [B, T, 3, H, d_model] per-head inputs when use_split_qkv_input.

        mask: [T_q, T_k] bool (True = may attend), or None for causal (the queries are the last T_q keys).
        A mask narrower than the keys means no query sees the keys beyond it: the fused path leaves them out.
        """
        cfg = self.cfg
        B, T = x.shape[:2]
        if x.dim() == 5:  # per-head q/k/v inputs: one projection per head (TransformerLens' split mode)
            q, k, v = (torch.einsum("bthd,hde->bthe", x[:, :, i], w) + b
                       for i, (w, b) in enumerate(((self.W_Q, self.b_Q), (self.W_K, self.b_K), (self.W_V, self.b_V))))
        else:
            q, k, v = self.qkv(x).view(B, T, 3, cfg.n_heads, cfg.d_head).unbind(2)
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        if self.rotary is not None:
            q = self.hook_rot_q(self.rotary(q, *rot))
            k = self.hook_rot_k(self.rotary(k, *rot))
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, T, d_head]
        if kv_cache is not None:
            k, v = kv_cache.extend(self.layer, k, v)
        T_k = k.shape[2]
        p_drop = cfg.dropout if self.training else 0.0
        if self.hook_attn_scores.has_hooks() or self.hook_pattern.has_hooks():
            scores = q @ k.transpose(-1, -2) / math.sqrt(cfg.d_head)
            if mask is None:
                mask = torch.ones(T, T_k, dtype=torch.bool, device=x.device).tril(T_k - T)
            mask = F.pad(mask, (0, T_k - mask.shape[-1]), value=False)  # hooks see every key, as TransformerLens
            scores = self.hook_attn_scores(scores.masked_fill(~mask, float("-inf")))
            pattern = self.hook_pattern(scores.softmax(dim=-1))
            z = F.dropout(pattern, p_drop, self.training) @ v
        else:
            if mask is None and T != T_k and T > 1:  # new queries after cached keys: causal with an offset
                mask = torch.ones(T, T_k, dtype=torch.bool, device=x.device).tril(T_k - T)
            causal = mask is None and T > 1
            if mask is not None and mask.shape[-1] < T_k:
                k, v = k[:, :, :mask.shape[-1]], v[:, :, :mask.shape[-1]]
            z = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p_drop, is_causal=causal)
        z = self.hook_z(z.transpose(1, 2))  # [B, T, H, d_head]
        if cfg.use_attn_result:
            result = self.hook_result(torch.einsum("bthe,hed->bthd", z, self.W_O))
            return result.sum(dim=2) + self.b_O
        return self.out(z.reshape(B, T, cfg.n_heads * cfg.d_head))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gated = cfg.act_fn == "swiglu"
        # SwiGLU: one matmul yields [gate | linear] halves, as TransformerLens' W_gate and W_in.
        self.fc_in = nn.Linear(cfg.d_model, (2 if self.gated else 1) * cfg.d_mlp, bias=cfg.use_bias)
        self.fc_out = nn.Linear(cfg.d_mlp, cfg.d_model, bias=cfg.use_bias)
        self.act = {"gelu": F.gelu, "relu": F.relu, "swiglu": F.silu}[cfg.act_fn]
        self.hook_pre = HookPoint()  # [B, T, d_mlp]
        self.hook_pre_linear = HookPoint()  # SwiGLU's linear half
        self.hook_post = HookPoint()

    W_in = property(lambda self: self.fc_in.weight[-self.fc_out.in_features:].T)
    W_gate = property(lambda self: self.fc_in.weight[: self.fc_out.in_features].T if self.gated else None)
    W_out = property(lambda self: self.fc_out.weight.T)
    b_in = property(lambda self: None if self.fc_in.bias is None else self.fc_in.bias[-self.fc_out.in_features:])
    b_out = property(lambda self: self.fc_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc_in(x)
        if self.gated:
            gate, linear = h.chunk(2, dim=-1)
            post = self.act(self.hook_pre(gate)) * self.hook_pre_linear(linear)
        else:
            post = self.act(self.hook_pre(h))
        return self.fc_out(self.hook_post(post))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.cfg = cfg
        self.ln1 = Norm(cfg)
        self.attn = Attention(cfg, layer)
        self.film1 = FiLM(cfg.n_cond, cfg.d_model) if cfg.n_cond else None
        if not cfg.attn_only:
            self.ln2 = Norm(cfg)
            self.mlp = MLP(cfg)
            self.film2 = FiLM(cfg.n_cond, cfg.d_model) if cfg.n_cond else None
            self.hook_mlp_in = HookPoint()
            self.hook_mlp_out = HookPoint()
            self.hook_resid_mid = HookPoint()
        self.drop = nn.Dropout(cfg.dropout)
        self.hook_resid_pre = HookPoint()  # [B, T, d_model]
        self.hook_attn_in = HookPoint()
        self.hook_q_input = HookPoint()  # [B, T, H, d_model], only when cfg.use_split_qkv_input
        self.hook_k_input = HookPoint()
        self.hook_v_input = HookPoint()
        self.hook_attn_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, resid: torch.Tensor, rot, mask, cond, kv_cache=None) -> torch.Tensor:
        resid = self.hook_resid_pre(resid)
        if self.cfg.use_split_qkv_input:
            per_head = resid[:, :, None, :].expand(-1, -1, self.cfg.n_heads, -1)
            attn_in = torch.stack([self._film(self.ln1(hook(per_head)), self.film1, cond, per_head=True)
                                   for hook in (self.hook_q_input, self.hook_k_input, self.hook_v_input)], dim=2)
        else:
            attn_in = self.hook_attn_in(self._film(self.ln1(resid), self.film1, cond))
        resid = resid + self.drop(self.hook_attn_out(self.attn(attn_in, rot, mask, kv_cache)))
        if self.cfg.attn_only:
            return self.hook_resid_post(resid)
        resid = self.hook_resid_mid(resid)
        mlp_in = self.hook_mlp_in(self._film(self.ln2(resid), self.film2, cond))
        resid = resid + self.drop(self.hook_mlp_out(self.mlp(mlp_in)))
        return self.hook_resid_post(resid)

    @staticmethod
    def _film(x, film, cond, per_head=False):
        if film is None:
            return x
        if per_head:
            return torch.stack([film(x[:, :, h], cond) for h in range(x.shape[2])], dim=2)
        return film(x, cond)


class HookedGPT(HookedRootModule):
    """Decoder-only transformer; `model(tokens)` returns logits [B, T, d_vocab]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tokenizer = None  # a task may attach one (to_tokens / to_string use it)
        self.embed = nn.Embedding(cfg.d_vocab, cfg.d_model)
        self.hook_embed = HookPoint()
        if cfg.positional_embedding_type == "learned":
            self.pos_embed = LearnedPositions(cfg.n_ctx, cfg.d_model)
            self.hook_pos_embed = HookPoint()
        if cfg.n_segments:
            self.segment_embed = SegmentEmbedding(cfg.n_segments, cfg.d_model)
            self.hook_segment_embed = HookPoint()
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg, layer) for layer in range(cfg.n_layers)])
        self.ln_final = Norm(cfg)
        self.unembed = nn.Linear(cfg.d_model, cfg.d_vocab, bias=False)
        if cfg.tie_embeddings:
            self.unembed.weight = self.embed.weight
        # The layout: per-position data set by a task (see set_layout); None means the default.
        self.register_buffer("layout_positions", None)
        self.register_buffer("layout_segment_ids", None)
        self.register_buffer("layout_attn_mask", None)
        self._keys_seen: list[int] | None = None  # per query row: 1 + its last visible key
        self.activation_checkpointing = False
        self.reset_parameters()
        self.setup()  # names every HookPoint (HookedRootModule)

    # ----- construction ---------------------------------------------------------------------------
    def reset_parameters(self):
        """GPT-2 initialisation: N(0, init_range); residual output projections scaled by 1/sqrt(2L)."""
        std = self.cfg.init_range
        for name, p in self.named_parameters():
            if name.endswith(".w"):
                nn.init.ones_(p)
            elif p.dim() == 1 or name.endswith(".b"):
                nn.init.zeros_(p)
            elif name.endswith(("attn.out.weight", "mlp.fc_out.weight")):
                nn.init.normal_(p, std=std / math.sqrt(2 * self.cfg.n_layers))
            else:
                nn.init.normal_(p, std=std)
        for block in self.blocks:
            for film in (block.film1, getattr(block, "film2", None)):
                if film is not None:
                    film.reset_parameters()

    def set_layout(self, layout) -> "HookedGPT":
        """Install a task's per-position data (an `interfere.model.layout.Layout`) as buffers.

        Sequences shorter than n_ctx use the first T entries, so a prefix of a layout is a layout.
        """
        device = self.embed.weight.device
        n = self.cfg.n_ctx
        for field in ("positions", "segment_ids", "attn_mask"):
            value = getattr(layout, field)
            if value is not None:
                if value.shape[0] != n or (field == "attn_mask" and value.shape != (n, n)):
                    raise ValueError(f"layout.{field} has shape {tuple(value.shape)} but the model has n_ctx={n}")
                dtype = torch.bool if field == "attn_mask" else torch.long
                value = value.to(device=device, dtype=dtype)
            setattr(self, f"layout_{field}", value)
        if self.layout_attn_mask is not None and not self.layout_attn_mask.any(-1).all():
            raise ValueError("layout.attn_mask has a row with no allowed key; every query must see something")
        self._keys_seen = None if self.layout_attn_mask is None else keys_seen(self.layout_attn_mask)
        return self

    def set_activation_checkpointing(self, on: bool = True) -> None:
        """Recompute each block's activations in backward instead of storing them (saves memory)."""
        self.activation_checkpointing = on

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self.cfg.device = str(self.embed.weight.device)  # TransformerLens tools read cfg.device
        return out

    # ----- forward -------------------------------------------------------------------------------
    def forward(self, input: Any, return_type: str | None = "logits", loss_per_token: bool = False, *,
                cond: torch.Tensor | None = None, positions: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None, kv_cache: KVCache | None = None,
                targets: torch.Tensor | None = None):
        """input: token ids [B, T] (or a string if a tokenizer is attached).

        return_type: "logits", "loss" (next-token cross-entropy, as TransformerLens), "both" or None.
        targets: [B, T] the token each position should predict (-100: none), as nanoGPT's `model(idx, targets)`:
        "loss" is then the mean cross-entropy against them, computed a block of positions at a time without the
        [B, T, vocab] logits (faster, far less memory); "both" also returns the logits, detached.
        cond: [B, n_cond] for FiLM models (ignored otherwise). positions / attn_mask override the layout.
        kv_cache: continue after the positions stored in it (and store these).
        """
        tokens = self.to_tokens(input)
        B, T = tokens.shape
        past = kv_cache.length if kv_cache is not None else 0
        if past + T > self.cfg.n_ctx:
            raise ValueError(f"sequence of {past + T} tokens is longer than the model's n_ctx={self.cfg.n_ctx}")
        here = slice(past, past + T)  # the positions of this call's tokens
        resid = self.hook_embed(self.embed(tokens))
        # [B, T, d_model] views of per-position tables, the shape TransformerLens' hooks have (its cache
        # helpers stack them with the batch's other components)
        if self.cfg.positional_embedding_type == "learned":
            resid = resid + self.hook_pos_embed(self.pos_embed(T, offset=past).expand(B, -1, -1))
        if self.cfg.n_segments:
            seg = self.layout_segment_ids
            if seg is None:
                raise ValueError("this model has segment embeddings: set_layout(...) must give segment_ids")
            resid = resid + self.hook_segment_embed(self.segment_embed(seg[here]).expand(B, -1, -1))
        resid = self.drop(resid)

        rot = self._rotation(here, positions)
        mask = attn_mask
        if mask is None and self.layout_attn_mask is not None:
            mask = self.layout_attn_mask[here, :self._keys_needed(here)]
        if self.cfg.n_cond and cond is None:
            raise ValueError(f"this model is FiLM-conditioned: pass cond=[batch, {self.cfg.n_cond}]")
        cond = cond if self.cfg.n_cond else None
        for block in self.blocks:
            if self.activation_checkpointing and self.training and torch.is_grad_enabled():
                resid = checkpoint(block, resid, rot, mask, cond, use_reentrant=False)
            else:
                resid = block(resid, rot, mask, cond, kv_cache)
        if kv_cache is not None:
            kv_cache.length += T
        resid = self.ln_final(resid)
        if targets is not None:
            return self._loss_against(resid, targets, return_type, loss_per_token)
        logits = self.unembed(resid)
        if return_type == "logits":
            return logits
        if return_type is None:
            return None
        loss = self.loss_fn(logits, tokens, per_token=loss_per_token)
        return loss if return_type == "loss" else (logits, loss)

    def _keys_needed(self, here: slice) -> int:
        """How many keys the layout's attention needs for the queries `here`: up to the last one any of them sees
        (Life's targets see only board t), so the fused path leaves the rest out. All of them when torch's
        deterministic mode meets attention dropout: that path's kernels split a narrower attention over threads
        in a thread-dependent order (without dropout, gradients stay bit-equal at 1 and 2 threads)."""
        if torch.are_deterministic_algorithms_enabled() and self.training and self.cfg.dropout > 0:
            return here.stop
        if self._keys_seen is None:  # a layout buffer assigned directly rather than through set_layout
            self._keys_seen = keys_seen(self.layout_attn_mask)
        return min(here.stop, max(self._keys_seen[here]))  # keys past this call's last are not there yet

    def _rotation(self, here: slice, positions: torch.Tensor | None):
        """(cos, signed sin) [T, 1, rotary_dim] for the positions `here`, shared by every layer; None without rotary."""
        kind = self.cfg.positional_embedding_type
        if kind not in ("rope", "rope2d"):
            return None
        if positions is None:
            positions = self.layout_positions
        if kind == "rope2d":
            if positions is None or positions.dim() != 2:
                raise ValueError("rope2d needs (row, col) positions: set_layout(...) with positions of shape [n_ctx, 2]")
        elif positions is None or positions.dim() != 1:
            positions = torch.arange(self.cfg.n_ctx, device=self.embed.weight.device)
        return self.blocks[0].attn.rotary.tables(positions[here])

    def _loss_against(self, resid: torch.Tensor, targets: torch.Tensor, return_type: str | None, per_token: bool):
        if return_type not in ("loss", "both") or per_token:
            raise ValueError(f'targets= gives the mean loss: use return_type="loss" or "both" (got {return_type!r}'
                             f'{", loss_per_token=True" if per_token else ""})')
        total, logits = linear_cross_entropy(resid, self.unembed.weight, targets, keep_logits=return_type == "both")
        loss = total / (targets != IGNORE).sum().clamp(min=1)
        return loss if return_type == "loss" else (logits, loss)

    @staticmethod
    def loss_fn(logits: torch.Tensor, tokens: torch.Tensor, per_token: bool = False) -> torch.Tensor:
        """Next-token cross-entropy: logits at t predict token t+1."""
        log_probs = logits[:, :-1].log_softmax(-1).float()
        nll = -log_probs.gather(-1, tokens[:, 1:, None])[..., 0]
        return nll if per_token else nll.mean()

    def run_with_cache(self, *args, return_cache_object: bool = True, remove_batch_dim: bool = False, **kwargs):
        """As TransformerLens: (output, ActivationCache); every hook fires, so attention runs explicitly."""
        out, cache_dict = super().run_with_cache(*args, remove_batch_dim=remove_batch_dim, **kwargs)
        if return_cache_object:
            return out, ActivationCache(cache_dict, self, has_batch_dim=not remove_batch_dim)
        return out, cache_dict

    # ----- TransformerLens' model surface ----------------------------------------------------------
    def to_tokens(self, input: Any, prepend_bos: bool | None = None, **_: Any) -> torch.Tensor:
        if isinstance(input, torch.Tensor):
            return input[None] if input.dim() == 1 else input
        if self.tokenizer is None:
            raise ValueError("this model has no tokenizer: pass token ids as a [batch, seq] tensor")
        texts = [input] if isinstance(input, str) else list(input)
        ids = [self.tokenizer.encode(t) for t in texts]
        if len({len(i) for i in ids}) != 1:
            raise ValueError("texts encode to different lengths; pass one text or equal-length texts")
        return torch.tensor(ids, device=self.embed.weight.device)

    def to_string(self, tokens: torch.Tensor) -> str | list[str]:
        if self.tokenizer is None:
            raise ValueError("this model has no tokenizer")
        if tokens.dim() > 1:
            return [self.tokenizer.decode(t.tolist()) for t in tokens]
        return self.tokenizer.decode(tokens.tolist())

    def to_str_tokens(self, input: Any) -> list[str]:
        tokens = self.to_tokens(input)[0]
        return [self.to_string(t[None]) for t in tokens]

    def to_single_token(self, string: str) -> int:
        tokens = self.to_tokens(string)
        if tokens.numel() != 1:
            raise ValueError(f"{string!r} is {tokens.numel()} tokens, not one")
        return int(tokens.item())

    def tokens_to_residual_directions(self, tokens) -> torch.Tensor:
        """W_U columns for these tokens: [..., d_model]."""
        if isinstance(tokens, str):
            tokens = self.to_single_token(tokens)
        return self.W_U[:, tokens].movedim(0, -1) if isinstance(tokens, torch.Tensor) else self.W_U[:, tokens]

    def accumulated_bias(self, layer: int, mlp_input: bool = False, include_mlp_biases: bool = True) -> torch.Tensor:
        """Sum of attention and MLP output biases written to the residual stream before `layer`."""
        total = torch.zeros(self.cfg.d_model, device=self.embed.weight.device)
        for i in range(layer):
            total = total + self.blocks[i].attn.b_O
            if include_mlp_biases and not self.cfg.attn_only and self.blocks[i].mlp.b_out is not None:
                total = total + self.blocks[i].mlp.b_out
        if mlp_input:
            total = total + self.blocks[layer].attn.b_O
        return total

    def set_use_attn_result(self, on: bool) -> None:
        self.cfg.use_attn_result = on

    def set_use_split_qkv_input(self, on: bool) -> None:
        self.cfg.use_split_qkv_input = on

    def set_use_attn_in(self, on: bool) -> None:
        if on:
            raise NotImplementedError("HookedGPT exposes blocks.{l}.hook_attn_in always; per-head attn_in is not supported")

    # Stacked weights [n_layers, ...] as TransformerLens' HookedTransformer names them.
    W_E = property(lambda self: self.embed.weight)
    W_U = property(lambda self: self.unembed.weight.T)
    W_pos = property(lambda self: self.pos_embed.W_pos)
    W_Q = property(lambda self: torch.stack([b.attn.W_Q for b in self.blocks]))
    W_K = property(lambda self: torch.stack([b.attn.W_K for b in self.blocks]))
    W_V = property(lambda self: torch.stack([b.attn.W_V for b in self.blocks]))
    W_O = property(lambda self: torch.stack([b.attn.W_O for b in self.blocks]))
    b_Q = property(lambda self: torch.stack([b.attn.b_Q for b in self.blocks]))
    b_K = property(lambda self: torch.stack([b.attn.b_K for b in self.blocks]))
    b_V = property(lambda self: torch.stack([b.attn.b_V for b in self.blocks]))
    b_O = property(lambda self: torch.stack([b.attn.b_O for b in self.blocks]))
    W_in = property(lambda self: torch.stack([b.mlp.W_in for b in self.blocks]))
    W_out = property(lambda self: torch.stack([b.mlp.W_out for b in self.blocks]))

    @property
    def QK(self):
        from transformer_lens import FactoredMatrix
        return FactoredMatrix(self.W_Q, self.W_K.transpose(-2, -1))

    @property
    def OV(self):
        from transformer_lens import FactoredMatrix
        return FactoredMatrix(self.W_V, self.W_O)


def keys_seen(mask: torch.Tensor) -> list[int]:
    """For each query row of a [T, T] attention mask, 1 + the index of the last key it may attend to."""
    T = mask.shape[-1]
    last = torch.where(mask, torch.arange(1, T + 1, device=mask.device), 0).amax(-1)
    return last.tolist()
