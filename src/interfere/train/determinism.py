"""Bit-reproducible training: on CPU the same weights at any thread count; on CUDA torch's documented settings.

What made CPU runs depend on the thread count (found by computing every gradient at 1 and at 2 threads):
- MKL's sgemm splits a long reduction (a weight gradient sums over batch x time) between threads. Its
  Conditional Numerical Reproducibility mode, MKL_CBWR=AUTO,STRICT, fixes the order; MKL reads it at its
  first call, so `import interfere` sets it (unless already set) before torch can run a matmul.
- The fused LayerNorm/RMSNorm backward sums the weight and bias gradients in per-thread buffers. Under
  torch's deterministic mode HookedGPT's Norm applies its affine part after the fused norm (one addcmul),
  whose reductions are split over features, never over the summed rows.
- A full reduction to one number (the gradient norm for clipping) adds per-thread partial sums:
  `grad_norm` below sums in a fixed order.
- Indexing's backward (W_seg[ids]) accumulates in a thread-dependent order: segment embeddings use
  F.embedding, whose backward does not.
bf16 matmuls run in oneDNN, whose blocking follows the thread count: under bf16 a run is bit-identical
to another at the same thread count, not across thread counts.
"""

from __future__ import annotations

import contextlib
import os

import torch
import torch.nn.functional as F

MKL_REPRODUCIBLE = "AUTO,STRICT"
_ROW = 1024  # elements per row of the fixed-order sum
_SERIAL = 32768  # at::internal::GRAIN_SIZE: shorter reductions run on one thread


def resolve(setting: str | bool, device: torch.device) -> bool:
    """train.deterministic: true, false, or auto (on for CPU, off for CUDA, where it costs kernels)."""
    return device.type != "cuda" if setting == "auto" else bool(setting)


@contextlib.contextmanager
def deterministic_mode(enabled: bool, device: torch.device):
    """torch's deterministic algorithms (and, on CUDA, cuDNN's and cuBLAS's settings) while training."""
    if not enabled:
        yield
        return
    was = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS' reproducible workspace
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True, warn_only=True)  # ops without a deterministic kernel warn
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was[0], warn_only=was[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


def mkl_reproducible() -> bool:
    """Whether MKL was told to be reproducible (it reads the variable once, at its first call)."""
    return os.environ.get("MKL_CBWR", "").upper().replace(" ", "") == MKL_REPRODUCIBLE


def grad_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The global L2 norm of `grads`, summed in an order no thread count changes.

    Each tensor is cut into rows of _ROW elements, each row summed by one thread; the row sums are cut
    and summed the same way until fewer than _SERIAL are left, which torch adds on one thread.
    """
    partial = torch.cat([_row_sums(g.detach().float().flatten().square()) for g in grads])
    while partial.numel() >= _SERIAL:
        partial = _row_sums(partial)
    return partial.sum().sqrt()


def _row_sums(flat: torch.Tensor) -> torch.Tensor:
    return F.pad(flat, (0, (-flat.numel()) % _ROW)).view(-1, _ROW).sum(1)


def clip_grad_norm(params, max_norm: float) -> torch.Tensor:
    """torch.nn.utils.clip_grad_norm_ with the norm of `grad_norm` (scale = max_norm / (norm + 1e-6), at most 1)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:  # nothing trainable got a gradient: torch returns a zero norm too
        return torch.zeros(())
    norm = grad_norm(grads)
    scale = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(grads, scale.to(grads[0].device))
    return norm
