"""Run a block single-threaded: faster for the toolkit's small tensors, and bit-reproducible.

Multithreaded BLAS splits sums differently for different thread counts, which changes the last bits
of a result (seen here: `theory.predict`'s quadrature differs in the 16th digit between 1 and 2
OpenBLAS threads). A dask worker starts with OMP/OPENBLAS_NUM_THREADS=1, while an interactive
process uses every core. `single_thread()` pins torch's intra-op pool and every loaded OpenBLAS
(numpy's and scipy's bundled copies) to one thread for its duration, then restores them; so the
local and dask executors run each sweep cell under the same conditions. Parallelism comes from
running cells or figures side by side, not from threads inside one. Small networks gain nothing
from intra-op threads either: on a busy 2-core machine two threads made a batch-1 MLP step ~20x slower.

OpenBLAS is found through /proc/self/maps (Linux). Elsewhere only torch is pinned; numpy builds
there use other BLAS libraries (e.g. Accelerate), which this module does not control.
"""
from __future__ import annotations

import contextlib
import ctypes
from pathlib import Path
from typing import Any, Iterator


def _openblas_controls() -> list[tuple[Any, Any]]:
    """(set_num_threads, get_num_threads) of every OpenBLAS loaded in this process."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    paths = sorted({line.split()[-1] for line in maps.splitlines()
                    if "openblas" in line.lower() and ".so" in line and line.split()[-1].startswith("/")})
    controls = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("scipy_openblas{}64_", "scipy_openblas{}", "openblas{}64_", "openblas{}"):
            set_, get_ = (getattr(lib, name.format(f"_{op}_num_threads"), None) for op in ("set", "get"))
            if set_ is not None and get_ is not None:
                set_.argtypes, get_.restype = [ctypes.c_int], ctypes.c_int
                controls.append((set_, get_))
                break
    return controls


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Pin torch and every loaded OpenBLAS to one thread inside the block; restore them after."""
    import scipy.linalg  # noqa: F401  (load scipy's OpenBLAS now, so it is pinned too)
    import torch

    torch_before = torch.get_num_threads()
    blas = [(set_, get_()) for set_, get_ in _openblas_controls()]
    torch.set_num_threads(1)
    for set_, _ in blas:
        set_(1)
    try:
        yield
    finally:
        torch.set_num_threads(torch_before)
        for set_, before in blas:
            set_(before)
