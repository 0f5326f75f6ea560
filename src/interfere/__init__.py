"""interfere: train, run and take apart small transformers.

Heavy imports (torch, transformer_lens) happen on first use so that `interfere --help` stays instant.
"""

import os

__version__ = "0.1.0"

# MKL reads this once, at its first call: set before torch can run a matmul, it makes MKL's results
# independent of the thread count (see interfere.train.determinism). A value the user set is kept.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")


def load(run_or_ckpt=None, runs_dir="runs", device=None):
    """(model, task) for a run id, a run directory or a checkpoint path; the newest run by default."""
    from interfere.train.runs import load as _load

    return _load(run_or_ckpt, runs_dir=runs_dir, device=device)
