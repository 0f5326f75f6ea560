"""Generation speed with and without the KV cache.

A randomly initialised HookedGPT (4 layers, d_model 256, 4 heads, n_ctx 512, learned positions, a
2048-token vocabulary) continues a random 256-token prompt by 256 tokens, greedily, batch 1, fp32:
- cached:   the prompt runs once, then each new token runs alone against the cached keys and values;
- uncached: the whole sequence reruns for every new token.
The two take turns repetition by repetition (background load on this shared machine hits both alike);
each one's median repetition counts. The outputs must be identical (checked every repetition).

    python benchmarks/generation.py            # 3 repetitions (about a minute on 2 cores)
    python benchmarks/generation.py --reps 5 --threads 1
    python benchmarks/generation.py --quick    # 16 new tokens, 1 repetition: only checks that it runs

The table is also written to benchmarks/results/generation.json. Target: cached >= 3x faster.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from interfere.model.generate import generate
from interfere.model import HookedGPT, ModelConfig

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 3.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--prompt", type=int, default=256)
    ap.add_argument("--new", type=int, default=256)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS / "generation.json")
    args = ap.parse_args()
    if args.quick:
        args.reps, args.new = 1, 16
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    cfg = ModelConfig(d_model=256, n_layers=4, n_heads=4, d_head=64, d_mlp=1024, n_ctx=512, d_vocab=2048,
                      act_fn="gelu", positional_embedding_type="learned", tie_embeddings=True)
    model = HookedGPT(cfg).eval()
    prompt = torch.randint(0, cfg.d_vocab, (1, args.prompt))
    generate(model, prompt[:, :32], 4, use_cache=True)  # warm-up
    generate(model, prompt[:, :32], 4, use_cache=False)

    times: dict[str, list[float]] = {"cached": [], "uncached": []}
    outputs: dict[str, torch.Tensor] = {}
    for rep in range(args.reps):
        order = ["cached", "uncached"] if rep % 2 == 0 else ["uncached", "cached"]
        for name in order:
            t = time.perf_counter()
            outputs[name] = generate(model, prompt, args.new, strategy="greedy", use_cache=name == "cached")
            times[name].append(time.perf_counter() - t)
        if not torch.equal(outputs["cached"], outputs["uncached"]):
            raise SystemExit("cached and uncached greedy outputs differ")

    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["uncached"] / med["cached"]
    rows = [{"path": k, "seconds": med[k], "tokens_per_s": args.new / med[k], "reps": times[k]}
            for k in ("uncached", "cached")]
    print(f"greedy, prompt {args.prompt} + {args.new} new tokens, 4 layers x d_model 256, n_ctx 512, "
          f"{torch.get_num_threads()} threads, median of {args.reps}")
    print(f"{'path':<10} {'seconds':>9} {'new tok/s':>10}")
    for r in rows:
        print(f"{r['path']:<10} {r['seconds']:>9.2f} {r['tokens_per_s']:>10.1f}")
    verdict = "ok" if ratio >= TARGET else "BELOW TARGET"
    print(f"speed-up (uncached / cached): {ratio:.1f}x  (target >= {TARGET:.0f}x: {verdict}); outputs identical")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "generation", "prompt_tokens": args.prompt, "new_tokens": args.new, "strategy": "greedy",
        "model": {"n_layers": 4, "d_model": 256, "n_heads": 4, "n_ctx": 512, "d_vocab": 2048},
        "rows": rows, "speedup": ratio, "target": TARGET, "meets_target": ratio >= TARGET, "identical": True,
        "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.machine(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None, "quick": args.quick,
    }, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
