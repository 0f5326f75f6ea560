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


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            line = next((line for line in f if line.startswith("flags")), "")
    except OSError:  # not Linux: no way to tell here, so no bf16
        return set()
    return set(line.partition(":")[2].split())


def has_bf16_hardware(device: torch.device) -> bool:
    """bf16 matmuls in hardware: CUDA with bf16 support, or an x86 CPU with AVX512-BF16 or AMX-BF16."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})
    return False


def resolve_dtype(name: str, device: torch.device) -> str:
    """train.dtype: fp32, bf16, or auto (bf16 where the hardware has it: without, CPU bf16 is many times slower)."""
    if name == "auto":
        return "bf16" if has_bf16_hardware(device) else "fp32"
    return name
