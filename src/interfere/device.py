"""Which torch device to run on."""

from __future__ import annotations

import torch

from interfere.errors import ConfigError


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def pick_device(name: str | torch.device | None = "auto") -> torch.device:
    """`auto`: cuda if available, then mps, then cpu. An explicit name must be usable here, or ConfigError."""
    if isinstance(name, torch.device):
        name = str(name)
    name = str(name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device={name!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name} but CUDA is not available here; use device=auto or device=cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device={name} but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif device.type == "mps" and not _mps_available():
        raise ConfigError(f"device={name} but MPS is not available here; use device=auto or device=cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device={name!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    return device
