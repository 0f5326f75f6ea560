"""Task-agnostic training: `train(cfg) -> run directory`; `load(run)` gives back (model, task)."""

from interfere.train.errors import CheckpointMismatchError, NonFiniteLossError, UnsafeCheckpointError


def train(cfg):
    """Train as cfg says (model / task / train groups, Hydra or OmegaConf) and return the run directory."""
    from interfere.train.loop import train as _train

    return _train(cfg)


__all__ = ["train", "NonFiniteLossError", "UnsafeCheckpointError", "CheckpointMismatchError"]
