"""Training throughput of HookedGPT against a plain nanoGPT-style model of the same shape, same run.

Each row times forward + backward + AdamW step (tokens/s). Models take turns, repetition by repetition,
so background load hits them alike; the median repetition counts. TransformerLens' own native model
(`TransformerBridge.boot_native`) runs as a peer where it can build the shape.

    python benchmarks/throughput.py            # about 10 minutes on 2 cores
    python benchmarks/throughput.py --quick    # a few steps, to see that it runs
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from interfere.model import HookedGPT, ModelConfig
from interfere.tasks.base import Layout

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 0.95


# ----- the reference: a plain GPT in the style of nanoGPT's model.py --------------------------------
class RefBlock(nn.Module):
    def __init__(self, d: int, n_heads: int, d_mlp: int):
        super().__init__()
        self.n_heads = n_heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, d_mlp), nn.Linear(d_mlp, d)

    def forward(self, x, mask):
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=2)
        q, k, v = (t.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, D))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class RefGPT(nn.Module):
    def __init__(self, vocab: int, n_ctx: int, d: int, n_layers: int, n_heads: int, d_mlp: int, mask=None):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(n_ctx, d)
        self.blocks = nn.ModuleList(RefBlock(d, n_heads, d_mlp) for _ in range(n_layers))
        self.ln_f, self.head = nn.LayerNorm(d), nn.Linear(d, vocab, bias=False)
        self.register_buffer("mask", mask)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x, self.mask)
        return self.head(self.ln_f(x))


# ----- shapes -----------------------------------------------------------------------------------------
@dataclass
class Shape:
    name: str
    vocab: int
    n_ctx: int
    d_model: int
    n_layers: int
    n_heads: int
    d_mlp: int
    batch: int
    layout: Layout | None = None  # Life: grid positions, segments and the block mask


def life_layout(side: int = 16) -> Layout:
    """The Life task's 16x16 sequence: 18 rule tokens, SEP, board, SEP, query slot (532 tokens)."""
    cells = side * side
    n = 18 + 1 + cells + 1 + cells
    rule, board, query = slice(0, 18), slice(19, 19 + cells), slice(20 + cells, n)
    grid = torch.stack([torch.arange(cells) // side, torch.arange(cells) % side], dim=1)
    positions = torch.zeros(n, 2, dtype=torch.long)
    positions[board], positions[query] = grid, grid
    segments = torch.zeros(n, dtype=torch.long)
    segments[18], segments[19 + cells] = 1, 1
    segments[board], segments[query] = 2, 3
    mask = torch.eye(n, dtype=torch.bool)
    mask[:, rule] = True
    mask[board, board] = True
    mask[query, board] = True
    return Layout(positions=positions, segment_ids=segments, attn_mask=mask)


SHAPES = [
    Shape("LM 4x256, ctx 256, vocab 4096", 4096, 256, 256, 4, 8, 1024, 16),
    Shape("Life 16x16 (532 tokens), 4x128", 40, 532, 128, 4, 4, 512, 16, life_layout(16)),
]


def build(kind: str, s: Shape) -> nn.Module | str:
    """A model of the shape, or a string saying why it cannot be built."""
    if kind == "reference":
        return RefGPT(s.vocab, s.n_ctx, s.d_model, s.n_layers, s.n_heads, s.d_mlp,
                      s.layout.attn_mask if s.layout else None)
    if kind == "HookedGPT":
        extra = dict(positional_embedding_type="rope2d", rope_period=16, n_segments=4) if s.layout else {}
        cfg = ModelConfig(d_model=s.d_model, n_layers=s.n_layers, n_heads=s.n_heads, d_head=s.d_model // s.n_heads,
                          d_mlp=s.d_mlp, n_ctx=s.n_ctx, d_vocab=s.vocab, **extra)
        model = HookedGPT(cfg)
        return model.set_layout(s.layout) if s.layout else model
    if kind == "TL native":
        if s.layout is not None:
            return "n/a: takes no attention mask or 2-D positions as data"
        from transformer_lens import TransformerBridge

        return TransformerBridge.boot_native(dict(
            d_model=s.d_model, d_head=s.d_model // s.n_heads, n_heads=s.n_heads, n_layers=s.n_layers,
            n_ctx=s.n_ctx, d_vocab=s.vocab, d_mlp=s.d_mlp, act_fn="gelu", normalization_type="LN"), device="cpu")
    raise ValueError(kind)


def time_steps(model: nn.Module, tokens: torch.Tensor, steps: int, bf16: bool, opt) -> float:
    """Seconds for `steps` training steps."""
    t0 = time.perf_counter()
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(tokens)
            loss = F.cross_entropy(logits.float().flatten(0, 1), tokens.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 steps x 1 repetition: only checks that it runs")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per repetition")
    parser.add_argument("--reps", type=int, default=5, help="repetitions (models alternate within each)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    steps, reps = (2, 1) if args.quick else (args.steps, args.reps)
    torch.set_num_threads(args.threads)

    rows = []
    for shape in SHAPES:
        for dtype in ("fp32", "bf16"):
            torch.manual_seed(0)
            tokens = torch.randint(0, shape.vocab, (shape.batch, shape.n_ctx))
            models = {kind: build(kind, shape) for kind in ("reference", "HookedGPT", "TL native")}
            runnable = {k: m for k, m in models.items() if isinstance(m, nn.Module)}
            opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in runnable.items()}
            rates = {k: [] for k in runnable}
            for k, m in runnable.items():  # warm-up: allocator, kernels, optimizer state
                time_steps(m, tokens, 2, dtype == "bf16", opts[k])
            for _ in range(reps):
                for k, m in runnable.items():
                    rates[k].append(steps * tokens.numel() / time_steps(m, tokens, steps, dtype == "bf16", opts[k]))
            ref = statistics.median(rates["reference"])
            for kind, m in models.items():
                tps = statistics.median(rates[kind]) if kind in rates else math.nan
                rows.append({"model": kind, "shape": shape.name, "dtype": dtype, "tokens_per_s": tps,
                             "ratio": tps / ref, "note": "" if kind in rates else m})
            print(f"done: {shape.name} {dtype}", flush=True)

    print(f"\ntraining throughput, {args.threads} threads, batch x ctx tokens per step, median of {reps} "
          f"repetitions of {steps} steps (Life: the same block mask for all; ours adds rope2d and segments)\n")
    print("| model | shape | dtype | tokens/s | vs reference |")
    print("| --- | --- | --- | ---: | ---: |")
    for r in rows:
        if r["note"]:
            print(f"| {r['model']} | {r['shape']} | {r['dtype']} | {r['note']} | |")
            continue
        flag = "  (below target)" if r["model"] == "HookedGPT" and r["ratio"] < TARGET else ""
        print(f"| {r['model']} | {r['shape']} | {r['dtype']} | {r['tokens_per_s']:,.0f} | {r['ratio']:.2f}{flag} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "throughput.json").write_text(json.dumps({"threads": args.threads, "steps": steps, "reps": reps,
                                                          "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
