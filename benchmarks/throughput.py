"""Training throughput of HookedGPT against a plain nanoGPT-style model of the same shape, same run.

Rows: each shape at fp32 and at bf16 (every model at that dtype), and at "auto": the reference at fp32 (nanoGPT's
CPU default) against HookedGPT at what `train.dtype=auto` picks here (bf16 on CPUs with AVX512-BF16 or AMX).
"interfere train" is HookedGPT as `interfere train` runs it by default: in deterministic mode on CPU, with its
optimizer (fused AdamW where torch has one); the other models share the same plain AdamW. Each model computes
its loss as it does when trained: the reference and TL native as nanoGPT's `model(x, y)` (the logits, then
F.cross_entropy), HookedGPT with its own `model(x, targets=y)` (unembedding and cross-entropy fused, a block
of positions at a time, never the whole logits).
Every row times whole training steps: forward, cross-entropy, backward, AdamW step (lr 1e-4, PyTorch's
defaults otherwise), in tokens/s. Each model trains in a process of its own (its own heap, as in a real run),
and the models take turns repetition by repetition, in a balanced order (each comes right after every other
equally often), so background load and what ran just before hit them alike. tokens/s is a model's median
repetition; the ratio is the median over repetitions of the reference's time / the model's in the same
repetition (seconds apart), which the machine's slow drifts in speed cancel out of.
TransformerLens' own native model (`TransformerBridge.boot_native`, built from a config, no download) runs as a peer.

    python benchmarks/throughput.py             # the six rows (make bench)
    python benchmarks/throughput.py --quick     # 1 warm-up + 1 step x 2 repetitions: only checks that it runs
    python benchmarks/throughput.py --only "Life fp32" --no-tl --steps 2 --reps 7 --threads 1
    python benchmarks/throughput.py --profile "Life fp32" --profile-batch 4   # op by op, ref vs ours
    python benchmarks/throughput.py --profile "LM fp32" --profile-model "interfere train"

Timed steps per row aim at --seconds (30) per model, in as many whole balanced designs of 1-step repetitions
as fit, but never fewer than 3 repetitions: fp32 rows take 2 to 4 minutes on 2 cores; bf16 rows far longer on
CPUs without bf16 hardware, where one bf16 step can take minutes (TL native is left out of a row when its step
exceeds --peer-budget).

The table is also written to benchmarks/results/throughput.json.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from interfere.model import HookedGPT, ModelConfig
from interfere.device import resolve_dtype
from interfere.tasks.base import Batch, Layout
from interfere.train.determinism import deterministic_mode
from interfere.train.loop import default_loss
from interfere.train.optim import fused_adamw
from reference import RefGPT  # benchmarks/reference.py: the plain nanoGPT-style model

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 1.0  # the project's goal: HookedGPT >= the reference at the same dtype, in every row
AUTO_TARGET = 1.3  # and at train.dtype=auto >= 1.3 x the reference at fp32 (LM row, on a CPU with bf16 hardware)
WARMUP = 3
LR = 1e-4


# ----- shapes -------------------------------------------------------------------------------------------
def life_layout(side: int = 16) -> Layout:
    """The Life task's one-step sequence for a side x side board (532 tokens for 16x16).

    [18 rule tokens] SEP [board: side^2 cells] SEP [query: side^2 cells]. Rule tokens and SEPs attend to the
    rule tokens and themselves; board cells to the rule and the whole board; query cells to the rule and
    the whole board (not to the query slot). Board and query cells sit at (row, col); the rest at (0, 0).
    Segments: 0 rule, 1 SEP, 2 board, 3 query.
    """
    n_rule, cells = 18, side * side
    n = n_rule + 1 + cells + 1 + cells
    rule, board, query = slice(0, n_rule), slice(n_rule + 1, n_rule + 1 + cells), slice(n - cells, n)
    seps = [n_rule, n_rule + 1 + cells]
    grid = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij"), -1).reshape(cells, 2)
    positions = torch.zeros(n, 2, dtype=torch.long)
    positions[board], positions[query] = grid, grid
    segments = torch.ones(n, dtype=torch.long)
    segments[rule], segments[board], segments[query] = 0, 2, 3
    mask = torch.zeros(n, n, dtype=torch.bool)
    mask[:, rule] = True
    mask[seps, seps] = True
    mask[board, board] = True
    mask[query, board] = True
    return Layout(positions=positions, segment_ids=segments, attn_mask=mask)


@dataclass
class Shape:
    key: str  # short name used in the table and by --profile
    desc: str
    vocab: int
    n_ctx: int
    d_model: int
    n_layers: int
    n_heads: int
    d_mlp: int
    batch: int
    layout: Layout | None = None  # Life: grid positions, segments and the block mask


SHAPES = [
    Shape("LM", "4L d256 8h mlp1024, ctx 256, vocab 4096, batch 16, causal", 4096, 256, 256, 4, 8, 1024, 16),
    Shape("Life", "16x16 board: 532 tok, 4L d128 4h mlp512, vocab 40, batch 16, block mask", 40, 532, 128, 4, 4,
          512, 16, life_layout(16)),
]
TRAINER = "interfere train"
KINDS = ("reference", "HookedGPT", TRAINER, "TL native")
# TRAINER trains as `interfere train` does by default on CPU: train.deterministic=auto (torch's deterministic mode,
# where Norm's affine part runs after the fused norm so that gradients do not depend on threads) and
# interfere.train.optim's choice of AdamW implementation, with the trainer's loss (`default_loss`).


class _Masked(nn.Module):
    """Calls a TransformerBridge with a fixed 4-D boolean attention mask (True = masked out)."""

    def __init__(self, bridge: nn.Module, masked_out: torch.Tensor):
        super().__init__()
        self.bridge = bridge
        self.register_buffer("masked_out", masked_out)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.bridge(tokens, attention_mask=self.masked_out)


def build(kind: str, s: Shape) -> nn.Module | str:
    """A freshly initialised model of the shape, or a string saying why it cannot be built."""
    if kind == "reference":
        return RefGPT(s.vocab, s.n_ctx, s.d_model, s.n_layers, s.n_heads, s.d_mlp,
                      s.layout.attn_mask if s.layout else None)
    if kind in ("HookedGPT", TRAINER):
        extra = dict(positional_embedding_type="rope2d", rope_period=16, n_segments=4) if s.layout else {}
        cfg = ModelConfig(d_model=s.d_model, n_layers=s.n_layers, n_heads=s.n_heads, d_head=s.d_model // s.n_heads,
                          d_mlp=s.d_mlp, n_ctx=s.n_ctx, d_vocab=s.vocab, act_fn="gelu", normalization_type="LN",
                          **extra)
        model = HookedGPT(cfg)
        return model.set_layout(s.layout) if s.layout else model
    if kind == "TL native":
        try:
            from transformer_lens import TransformerBridge

            if not hasattr(TransformerBridge, "boot_native"):
                return "n/a: this transformer_lens has no TransformerBridge.boot_native"
            bridge = TransformerBridge.boot_native(dict(
                d_model=s.d_model, d_head=s.d_model // s.n_heads, n_heads=s.n_heads, n_layers=s.n_layers,
                n_ctx=s.n_ctx, d_vocab=s.vocab, d_mlp=s.d_mlp, act_fn="gelu", normalization_type="LN",
                positional_embedding_type="standard",
                attention_dir="bidirectional" if s.layout else "causal"), device="cpu")
        except Exception as e:  # a peer row, not the point of the benchmark: report and carry on
            return f"n/a: boot_native failed ({type(e).__name__}: {str(e).splitlines()[0][:80]})"
        if s.layout is None:
            return bridge
        # NativeAttention takes a 4-D bool mask, True = masked out, ORed into its own (here: none).
        return _Masked(bridge, ~s.layout.attn_mask[None, None])
    raise ValueError(kind)


# ----- timing ---------------------------------------------------------------------------------------------
def train_steps(kind: str, model: nn.Module, opt: torch.optim.Optimizer, tokens: torch.Tensor, steps: int,
                dtype: str) -> tuple[float, float]:
    """(wall, process CPU) seconds for `steps` training steps of a model of the row (`mean_loss`, backward, AdamW).

    CPU time counts only the time this process actually ran, so it stays comparable when other processes
    take turns on the cores (with more threads it also counts their spin-waits).
    """
    targets = tokens.roll(-1, 1)  # random tokens: what the last position predicts does not matter
    with deterministic_mode(kind == TRAINER, torch.device("cpu")):
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=runs_bf16(kind, dtype)):
                loss = mean_loss(kind, model, tokens, targets)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return time.perf_counter() - w0, time.process_time() - c0


def mean_loss(kind: str, model: nn.Module, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The mean cross-entropy against targets as each model computes it when trained: as nanoGPT's `model(x, y)`
    (the logits, then F.cross_entropy) for the reference and TL native; HookedGPT's own `model(x, targets=y)`
    (unembedding and cross-entropy fused); interfere train's `default_loss`, which calls the latter."""
    if kind == TRAINER:
        batch = Batch(tokens, targets, torch.ones_like(tokens, dtype=torch.bool))
        return default_loss(model, batch, keep_logits=False)[0] / targets.numel()
    if kind == "HookedGPT":
        return model(tokens, return_type="loss", targets=targets)
    return F.cross_entropy(model(tokens).float().flatten(0, 1), targets.flatten())


def optimizer_for(kind: str, model: nn.Module) -> torch.optim.Optimizer:
    """The trainer's AdamW implementation for `interfere train`, PyTorch's default one for every other model."""
    fused = fused_adamw(model.parameters()) if kind == TRAINER else None
    return torch.optim.AdamW(model.parameters(), lr=LR, fused=fused)


def runs_bf16(kind: str, dtype: str) -> bool:
    """Does a model of the row train under bf16 autocast? In the auto row the reference stays at fp32."""
    if dtype == "auto":
        return kind != "reference" and resolve_dtype("auto", torch.device("cpu")) == "bf16"
    return dtype == "bf16"


def balanced_turns(n: int) -> list[list[int]]:
    """A Williams design: orders of n models in which each model comes right after every other equally often.

    A plain rotation gives each model the same predecessor every time, and what ran just before (its memory
    left in the allocator, its caches) moves a model's time by a few percent.
    """
    first = [0] + [(k + 1) // 2 if k % 2 else n - k // 2 for k in range(1, n)]
    rows = [[(x + r) % n for x in first] for r in range(n)]
    return rows if n % 2 == 0 else rows + [row[::-1] for row in rows]


class ModelProcess:
    """One model of a row training in a process of its own, a step batch at a time when told.

    A process per model, as in a real run: each has its own heap, so no model's speed depends on the
    memory another left behind (in one shared process TL native's large attention patterns cost
    HookedGPT ~5% in the LM row, through the allocator).
    """

    def __init__(self, ctx, kind: str, shape: Shape, dtype: str, threads: int):
        self.kind = kind
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, kind, shape.key, dtype, threads), daemon=True)
        self.proc.start()
        child.close()

    def built(self) -> int | str:
        """The model's parameter count once its process has built it, or why it could not."""
        return self.conn.recv()

    def ask(self, *msg):
        self.conn.send(msg)
        reply = self.conn.recv()
        if isinstance(reply, BaseException):
            raise RuntimeError(f"{self.kind} failed in its process") from reply
        return reply

    def close(self) -> None:
        try:
            self.conn.send(("stop",))
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout=30)


def _serve(conn, kind: str, shape_key: str, dtype: str, threads: int) -> None:
    """A ModelProcess's process: builds the model, answers ("steps", n) with (wall, CPU) seconds, until ("stop",)."""
    torch.set_num_threads(threads)
    shape = next(s for s in SHAPES if s.key == shape_key)
    torch.manual_seed(0)
    tokens = torch.randint(0, shape.vocab, (shape.batch, shape.n_ctx))
    torch.manual_seed(0)
    model = build(kind, shape)
    if isinstance(model, str):
        conn.send(model)
        return
    model.train()
    opt = optimizer_for(kind, model)
    conn.send(sum(p.numel() for p in model.parameters()))
    while (msg := conn.recv())[0] == "steps":
        try:
            conn.send(train_steps(kind, model, opt, tokens, msg[1], dtype))
        except Exception as e:  # the parent reports it
            conn.send(e)


def run_row(shape: Shape, dtype: str, kinds: tuple[str, ...], steps: int | None, reps: int | None,
            seconds: float, warmup: int = WARMUP, peer_budget: float = math.inf, threads: int | None = None
            ) -> list[dict]:
    """Time every kind on one shape and dtype, each in its own process, taking turns; one result dict per kind.

    steps / reps None: about `seconds` of timed steps per model, judged by the reference's last warm-up
    step: as many whole balanced designs of 1-step repetitions as fit (a design has as many repetitions as
    models; twice that for an odd number), or as few as 3 when a step is too slow for one design in the time.
    A peer (TL native) whose first step takes longer than `peer_budget` seconds is left out of the row.
    """
    if dtype == "auto":  # nanoGPT's CPU default (fp32) against what `interfere train` picks by itself
        kinds = tuple(k for k in kinds if k in ("reference", TRAINER))
    ctx = multiprocessing.get_context("spawn")
    trainers = {k: ModelProcess(ctx, k, shape, dtype, threads or torch.get_num_threads()) for k in kinds}
    try:
        return _time_row(shape, dtype, trainers, steps, reps, seconds, warmup, peer_budget)
    finally:
        for t in trainers.values():
            t.close()


def _time_row(shape, dtype, trainers, steps, reps, seconds, warmup, peer_budget) -> list[dict]:
    built = {k: t.built() for k, t in trainers.items()}  # parameter counts, or why a model could not be built
    notes = {k: v for k, v in built.items() if isinstance(v, str)}
    live = [k for k in trainers if k not in notes]
    last_warm = {}
    for k in list(live):
        for i in range(warmup):
            last_warm[k] = trainers[k].ask("steps", 1)[0]
            if i == 0 and k not in ("reference", "HookedGPT") and last_warm[k] > peer_budget:
                notes[k] = f"n/a: skipped, one step took {last_warm.pop(k):.0f} s (> --peer-budget {peer_budget:g} s)"
                live.remove(k)
                break
    t_step = last_warm["reference"]
    turns = balanced_turns(len(live))
    if reps is None:  # as many whole designs as the time allows, of one step each: many close pairs
        designs = 1 if steps is not None else int(seconds // (len(turns) * t_step))
        reps = len(turns) * designs if designs else max(3, min(len(turns), round(seconds / t_step)))
    if steps is None:
        steps = max(1, round(seconds / reps / t_step))
    walls: dict[str, list[float]] = {k: [] for k in live}
    cpus: dict[str, list[float]] = {k: [] for k in live}
    for rep in range(reps):
        for k in (live[i] for i in turns[rep % len(turns)]):
            wall, cpu = trainers[k].ask("steps", steps)
            walls[k].append(wall)
            cpus[k].append(cpu)
    n_tok = steps * shape.batch * shape.n_ctx
    ref_tps = n_tok / statistics.median(walls["reference"])

    def paired(times: dict[str, list[float]], kind: str) -> list[float]:  # the reference's time / kind's, by rep
        return sorted(r / t for r, t in zip(times["reference"], times[kind]))

    rows = []
    for kind in trainers:
        row = {"model": kind, "shape": shape.key, "shape_desc": shape.desc, "dtype": dtype,
               "runs_as": "bf16" if runs_bf16(kind, dtype) else "fp32", "tokens_per_step": shape.batch * shape.n_ctx,
               "warmup_steps": warmup, "steps_per_rep": steps, "reps": reps}
        if kind in live:
            tps = n_tok / statistics.median(walls[kind])
            ratios = paired(walls, kind)
            quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
            row.update(tokens_per_s=tps, ratio=statistics.median(ratios), ratio_quartiles=[quartiles[0], quartiles[2]],
                       cpu_ratio=statistics.median(paired(cpus, kind)), ratio_of_medians=tps / ref_tps,
                       rep_wall_s=walls[kind], rep_cpu_s=cpus[kind], params=built[kind], note="")
        else:
            row.update(tokens_per_s=None, ratio=None, ratio_quartiles=None, cpu_ratio=None, ratio_of_medians=None,
                       rep_wall_s=[], rep_cpu_s=[], params=None, note=notes[kind])
        rows.append(row)
    return rows


# ----- profiling ------------------------------------------------------------------------------------------
def profile_row(shape: Shape, dtype: str, rounds: int, top: int, batch: int | None = None,
                model: str = "HookedGPT") -> None:
    """Where the reference's and `model`'s (HookedGPT or interfere train) training steps spend their time, op by op.

    Each round profiles one step of each model (alternating who goes first), so load bursts hit both;
    an op's time is its minimum over rounds of self CPU ms per step (the least disturbed round), grouped
    by op and input shapes.
    """
    import dataclasses

    from torch.profiler import ProfilerActivity, profile

    if batch:
        shape = dataclasses.replace(shape, batch=batch)
    torch.manual_seed(0)
    tokens = torch.randint(0, shape.vocab, (shape.batch, shape.n_ctx))
    live, opts = {}, {}
    for kind in ("reference", model):
        torch.manual_seed(0)
        live[kind] = build(kind, shape).train()
        opts[kind] = optimizer_for(kind, live[kind])
        train_steps(kind, live[kind], opts[kind], tokens, WARMUP, dtype)
    per_op = {k: {} for k in live}  # kind -> (op, shapes) -> [ms per round]
    walls = {k: [] for k in live}
    for rnd in range(rounds):
        for kind in (list(live) if rnd % 2 == 0 else list(live)[::-1]):
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                walls[kind].append(train_steps(kind, live[kind], opts[kind], tokens, 1, dtype)[0] * 1e3)
            for e in prof.key_averages(group_by_input_shape=True):
                if e.self_cpu_time_total > 0:
                    key = (e.key, str(e.input_shapes)[:70], e.count)
                    per_op[kind].setdefault(key, [0.0] * rounds)[rnd] += e.self_cpu_time_total / 1e3
    med = {k: {op: min(v) for op, v in ops.items()} for k, ops in per_op.items()}
    ref, ours = med["reference"], med[model]
    print(f"\nprofile {shape.key} {dtype}, batch {shape.batch}, {rounds} interleaved rounds: median wall ms/step "
          f"reference {statistics.median(walls['reference']):.0f}, {model} {statistics.median(walls[model]):.0f}"
          f";\nself CPU ms/step summed over ops (each op's best round): {sum(ref.values()):.0f} vs {sum(ours.values()):.0f}")
    print("| op | input shapes | calls | ref ms | ours ms | ours - ref |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    keys = sorted(set(ref) | set(ours), key=lambda k: -abs(ours.get(k, 0.0) - ref.get(k, 0.0)))
    for k in keys[:top]:
        r, o = ref.get(k), ours.get(k)
        rs, os_ = ("-" if r is None else f"{r:.1f}"), ("-" if o is None else f"{o:.1f}")
        print(f"| {k[0]} | {k[1]} | {k[2]} | {rs} | {os_} | {(o or 0.0) - (r or 0.0):+.1f} |")
    only = {kind: sorted({k[0] for k in med[kind]} - {k[0] for k in med[other]})
            for kind, other in (("reference", model), (model, "reference"))}
    print(f"ops only in the reference: {', '.join(only['reference']) or '-'}")
    print(f"ops only in {model}: {', '.join(only[model]) or '-'}")


# ----- main -----------------------------------------------------------------------------------------------
def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_info() -> dict:
    """The CPU's name and whether it has bf16 hardware (without it, bf16 matmuls take a slow path)."""
    name, flags = platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    return {"name": name, "cores": default_threads(), "avx512f": "avx512f" in flags,
            "bf16_hardware": bool(flags & {"avx512_bf16", "amx_bf16"})}


def print_table(rows: list[dict], header: str) -> list[dict]:
    """The markdown table; returns the rows of HookedGPT and interfere train below target."""
    print(header)
    print("| model | shape | row | runs as | tokens/s | vs reference | quartiles | (by CPU time) | reps x steps |")
    print("| --- | --- | --- | --- | ---: | ---: | :---: | ---: | :---: |")
    low = []
    for r in rows:
        if r["tokens_per_s"] is None:
            print(f"| {r['model']} | {r['shape']} | {r['dtype']} | | {r['note']} | | | | |")
            continue
        target = target_of(r)
        flag = f" **< {target}**" if target is not None and r["ratio"] < target else ""
        if flag:
            low.append(r)
        print(f"| {r['model']} | {r['shape']} | {r['dtype']} | {r['runs_as']} | {r['tokens_per_s']:,.0f} | "
              f"{r['ratio']:.2f}{flag} | {r['ratio_quartiles'][0]:.2f}-{r['ratio_quartiles'][1]:.2f} | "
              f"{r['cpu_ratio']:.2f} | {r['reps']}x{r['steps_per_rep']} |")
    return low


def target_of(r: dict) -> float | None:
    """The ratio a HookedGPT row must reach (None: a peer, or an auto row without bf16 hardware to gain from)."""
    if r["model"] not in ("HookedGPT", TRAINER):
        return None
    if r["dtype"] != "auto":
        return TARGET
    return AUTO_TARGET if r["shape"] == "LM" and r["runs_as"] == "bf16" else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="1 warm-up step, then 1 timed step x 2 repetitions: only checks that it runs")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per repetition (default: about --seconds per model and row)")
    parser.add_argument("--reps", type=int, default=None,
                        help="repetitions, the models taking turns within each (default: whole designs in --seconds)")
    parser.add_argument("--seconds", type=float, default=30.0, help="target timed seconds per model and row")
    parser.add_argument("--threads", type=int, default=default_threads(), help="torch threads (default: usable cores)")
    parser.add_argument("--only", nargs="*", default=None, metavar="ROW",
                        help='rows to run, e.g. "LM fp32" "Life bf16" "LM auto" (default: all six)')
    parser.add_argument("--no-tl", action="store_true", help="skip the TransformerLens native peer rows")
    parser.add_argument("--peer-budget", type=float, default=90.0,
                        help="leave TL native out of a row when one of its steps takes longer (s)")
    parser.add_argument("--profile", nargs="*", default=None, metavar="ROW",
                        help='profile the reference vs --profile-model for these rows (e.g. "Life bf16") instead of timing')
    parser.add_argument("--profile-model", default="HookedGPT", choices=("HookedGPT", TRAINER),
                        help="the model profiled against the reference")
    parser.add_argument("--profile-rounds", type=int, default=5, help="interleaved profiled steps per model")
    parser.add_argument("--profile-batch", type=int, default=None, help="a smaller batch to profile quickly")
    parser.add_argument("--out", type=Path, default=RESULTS / "throughput.json")
    args = parser.parse_args()
    steps, reps, warmup = (1, 2, 1) if args.quick else (args.steps, args.reps, WARMUP)
    torch.set_num_threads(args.threads)
    wanted = [(s, d) for s in SHAPES for d in ("fp32", "bf16", "auto")]

    def pick(names):
        chosen = [(s, d) for s, d in wanted if f"{s.key} {d}".lower() in {n.lower() for n in names}]
        if not chosen:
            sys.exit(f"no such row in {names}; rows: {', '.join(f'{s.key} {d}' for s, d in wanted)}")
        return chosen

    if args.profile is not None:
        for shape, dtype in pick(args.profile or ["LM fp32"]):
            profile_row(shape, dtype, args.profile_rounds, top=25, batch=args.profile_batch, model=args.profile_model)
        return 0
    if args.only:
        wanted = pick(args.only)
    kinds = tuple(k for k in KINDS if not (args.no_tl and k == "TL native"))

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    rows = []
    for shape, dtype in wanted:
        t_row = time.perf_counter()
        rows += run_row(shape, dtype, kinds, steps, reps, args.seconds, warmup, args.peer_budget, args.threads)
        print(f"  done {shape.key} {dtype} in {time.perf_counter() - t_row:.0f} s", flush=True)
    load_after = os.getloadavg()

    header = (f"\nTraining throughput (forward + backward + AdamW lr {LR:g}), torch {torch.__version__}, "
              f"{args.threads} threads, {cpu_info()['name']} "
              f"({'with' if cpu_info()['bf16_hardware'] else 'without'} bf16 hardware: train.dtype=auto is "
              f"{resolve_dtype('auto', torch.device('cpu'))} here);\n"
              f"each model in its own process; tokens/s = its median repetition after {warmup} warm-up steps; vs "
              f"reference = median over repetitions of the reference's time / the model's in the same repetition\n"
              f"(quartiles: of those per-repetition ratios); the CPU-time column compares process CPU seconds "
              f"instead of wall time (robust to other processes);\n"
              f"load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
              f"{time.perf_counter() - t0:.0f} s in all.\n")
    low = print_table(rows, header)
    print("\nShapes: " + "; ".join(f"{s.key} = {s.desc}" for s in SHAPES if any(r["shape"] == s.key for r in rows)))
    print("Life: every model gets the same shapes and the same [532, 532] boolean block mask (SDPA attn_mask for "
          "the reference and HookedGPT, a 4-D mask for TL native);\n  the reference and TL native use learned "
          "positions, HookedGPT additionally does rope2d (period 16) and segment embeddings.")
    print("TL native = TransformerBridge.boot_native (no SDPA: explicit scores and pattern, as its hooks need).")
    if any(r["dtype"] == "bf16" for r in rows) and not cpu_info()["bf16_hardware"]:
        print("This CPU has no bf16 hardware (no AVX512-BF16/AMX): bf16 autocast runs its matmuls on a slow path, "
              "so bf16 steps are several times slower than fp32 here.")
    if low:
        print("\nBELOW TARGET: " + ", ".join(
            f"{r['model']} {r['shape']} {r['dtype']} at {r['ratio']:.2f} < {target_of(r)} (by CPU time "
            f"{r['cpu_ratio']:.2f})" for r in low)
            + "\n  (a wall ratio below target with a CPU-time ratio above it points at load from other processes)"
            + f'\n  see where the time goes: python benchmarks/throughput.py --profile "{low[0]["shape"]} '
              f'{low[0]["dtype"]}" --profile-batch 4')
    else:
        print(f"\nHookedGPT is at or above its target in every row run ({TARGET} x the reference at the same dtype; "
              f"{AUTO_TARGET} x at dtype=auto on the LM row where the CPU has bf16 hardware).")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "training throughput", "target_ratio": TARGET, "threads": args.threads,
        "torch": torch.__version__, "python": platform.python_version(), "cpu": cpu_info(),
        "warmup_steps": warmup, "lr": LR, "quick": args.quick,
        "loadavg_before": load_before, "loadavg_after": load_after, "below_target": [f"{r['shape']} {r['dtype']}"
                                                                                   for r in low],
        "rows": rows}, indent=1, default=str))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
