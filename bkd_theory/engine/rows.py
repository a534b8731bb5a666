"""Chain-stacked tensors `[R, P]` whose rows start on `ROW_ALIGN`-byte boundaries.

The loop keeps chain r's parameters (and every per-chain state of an update rule) in row r of an
`[R, P]` tensor. CPU kernels can round differently with a row's alignment: the batched GEMMs of
the MLP student give other last bits for a weight matrix that starts 4 bytes off a 16-byte boundary
(measured: the 2x128 MLP's gradient changes for 12 of 15 float32 offsets of theta, none of its
input's), so with rows packed back to back, chain r's numbers depended on r P mod 4 and a chain run
alone did not equal it inside a batch. With every row starting on a 64-byte boundary (a view of
`[R, P']` storage, P' the next multiple of 64 bytes) each chain computes at the same alignment
wherever it sits: alone, in a batch, or in a stack of runs (`engine.stack`).
"""
from __future__ import annotations

import torch

__all__ = ["ROW_ALIGN", "aligned_copy", "chain_rows", "rows_like"]

#: bytes: every chain's row starts on this boundary (the widest SIMD register and a cache line)
ROW_ALIGN = 64


def chain_rows(R: int, P: int, dtype: torch.dtype, device: torch.device | str = "cpu") -> torch.Tensor:
    """An uninitialised `[R, P]` tensor of `dtype` whose rows start on `ROW_ALIGN`-byte boundaries
    (row stride P rounded up to a multiple of ROW_ALIGN bytes)."""
    item = torch.empty(0, dtype=dtype).element_size()
    per = max(1, ROW_ALIGN // item)
    stride = -(-P // per) * per
    flat = torch.empty(R * stride + per, dtype=dtype, device=device)
    skip = (-flat.data_ptr() % ROW_ALIGN) // item  # 0 from torch's 64-byte aligned allocator
    return flat[skip:skip + R * stride].view(R, stride)[:, :P]


def rows_like(theta: torch.Tensor, fill: float | None = None) -> torch.Tensor:
    """`chain_rows` of theta's shape, dtype and device; filled with `fill` unless None."""
    out = chain_rows(theta.shape[0], theta.shape[1], theta.dtype, theta.device)
    return out if fill is None else out.fill_(fill)


def aligned_copy(theta: torch.Tensor) -> torch.Tensor:
    """A copy of `theta` `[R, P]` in `chain_rows` storage."""
    return rows_like(theta).copy_(theta)
