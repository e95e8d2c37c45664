"""The array module behind the NumPy engine; swap in CuPy where a GPU exists.

Layer code reaches arrays only through ``xp()`` so that ``use("cupy")`` moves the
whole engine without touching a layer.
"""

from __future__ import annotations

import contextlib
import os

import numpy

_xp = numpy


def xp():
    """The active array module (NumPy unless ``use("cupy")`` was called)."""
    return _xp


def use(name: str) -> None:
    """Select the array module by name: "numpy" or "cupy"."""
    global _xp
    if name == "numpy":
        _xp = numpy
    elif name == "cupy":
        try:
            import cupy  # noqa: PLC0415 - optional, GPU machines only
        except ImportError as exc:  # pragma: no cover - no GPU in CI
            raise RuntimeError("CuPy is not installed; `pip install cupy-cuda12x` on a GPU machine") from exc
        _xp = cupy
    else:
        raise ValueError(f"unknown array backend {name!r}; choose 'numpy' or 'cupy'")


def colsum(a):
    """Column sums of a 2-D array as a matrix-vector product: several times faster than ``sum(axis=0)``."""
    return _xp.ones(a.shape[0], dtype=a.dtype) @ a


def to_numpy(a):
    """A NumPy array from an array of the active module, a torch tensor or a list."""
    if hasattr(a, "detach"):  # torch.Tensor
        return a.detach().cpu().numpy()
    if hasattr(a, "get") and not isinstance(a, numpy.ndarray):  # cupy.ndarray
        return a.get()
    return numpy.asarray(a)


def erf(x):
    """The error function elementwise (SciPy's, or CuPy's on the GPU)."""
    if _xp is numpy:
        from scipy.special import erf as _erf
    else:  # pragma: no cover - GPU only
        from cupyx.scipy.special import erf as _erf
    return _erf(x)


# --- threads for memory-bound work -------------------------------------------
# BLAS already spreads matrix products over the cores, but NumPy's elementwise loops run on
# one. They release the GIL, so a few Python threads, each on its own slice of the batch,
# put every core to work on the copies, masks and sums around the products.

_threads: int | None = None  # None: every core this process may use
_pool = None
_MIN_ITEMS = 1 << 15  # below this many elements a thread hand-off costs more than it saves
_BLOCK_ITEMS = 1 << 18  # elements per block: 1 MB of float32 stays in cache between passes


def num_threads() -> int:
    """Threads the engine uses for elementwise work (the BLAS has its own setting)."""
    if _threads is not None:
        return _threads
    from twinnet.hardware import cores

    return cores()


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for elementwise work (pair with threadpoolctl for the BLAS)."""
    global _threads, _pool
    if n < 1:
        raise ValueError(f"number of threads must be >= 1, got {n}")
    _threads = n
    if _pool is not None:
        _pool.shutdown(wait=True)
        _pool = None


def _executor():
    global _pool
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor

        _pool = ThreadPoolExecutor(max(1, num_threads() - 1), thread_name_prefix="twinnet")
    return _pool


def parallel(fn, n: int, size: int | None = None, blas: bool = False, blocks: int | None = None) -> None:
    """Call ``fn(slice)`` on contiguous chunks that cover ``range(n)``, shared out between the threads.

    ``size`` (elements of the largest array the chunks cut) lets small jobs run inline, and
    cuts each thread's share into blocks of about ``_BLOCK_ITEMS`` elements, so that a
    function making several passes over its chunk finds it still in cache on the second.
    Chunks must write disjoint outputs; an exception in any chunk is raised here. ``blas``:
    ``fn`` runs matrix products of its own, so the BLAS keeps to one thread while the chunks run.
    ``blocks``: cut the work into this many blocks instead (at least one per thread).
    """
    here = _xp is numpy  # CuPy runs whole arrays on the GPU: no threads, no blocks
    t = min(num_threads(), n) if here and (size is None or size >= _MIN_ITEMS) else 1
    if not here:
        blocks = 1
    elif blocks is None:
        blocks = 1 if size is None else size // _BLOCK_ITEMS
    blocks = max(t, min(n, blocks))
    if blocks <= 1:
        fn(slice(0, n))
        return
    per_thread = -(-blocks // t)  # blocks in each thread's share

    def run(lo: int, hi: int) -> None:
        k = max(1, min(per_thread, hi - lo))
        cuts = [lo + (hi - lo) * i // k for i in range(k + 1)]
        for a, b in zip(cuts, cuts[1:]):
            fn(slice(a, b))

    bounds = [n * i // t for i in range(t + 1)]
    with blas_threads(1) if blas and t > 1 else contextlib.nullcontext():
        futures = [_executor().submit(run, bounds[i], bounds[i + 1]) for i in range(1, t)]
        try:
            run(bounds[0], bounds[1])
        finally:
            for f in futures:
                f.result()


_controller = None


def blas_threads(n: int):
    """A context in which the BLAS runs each product on at most ``n`` threads (e.g. 1 while the
    caller's own threads share the cores, or where products are too small to share)."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller.limit(limits=n, user_api="blas")


def parallel_items(fn, items: list, sizes: list[int]) -> None:
    """Call ``fn(item)`` for every item, the items shared out between the threads by size."""
    t = min(num_threads(), len(items))
    if t <= 1 or _xp is not numpy or sum(sizes) < _MIN_ITEMS:
        for item in items:
            fn(item)
        return
    shares: list[list] = [[] for _ in range(t)]
    loads = [0] * t
    for i in sorted(range(len(items)), key=lambda i: -sizes[i]):  # largest first, to the lightest share
        k = loads.index(min(loads))
        shares[k].append(items[i])
        loads[k] += sizes[i]

    def run(share: list) -> None:
        for item in share:
            fn(item)

    futures = [_executor().submit(run, share) for share in shares[1:]]
    try:
        run(shares[0])
    finally:
        for f in futures:
            f.result()


def tune_allocator() -> None:
    """Keep freed memory in the heap rather than returning it to the OS (glibc only).

    Every large NumPy temporary otherwise costs fresh pages, zeroed by the kernel on first
    touch: in a training step that is a sizeable share of the time. Called by the NumPy
    learner; set TWINNET_KEEP_MALLOC=1 to leave the allocator alone.
    """
    global _allocator_tuned
    if _allocator_tuned or os.environ.get("TWINNET_KEEP_MALLOC") == "1":
        return
    _allocator_tuned = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
        # mallopt takes C ints: a larger Python int would be cut down (1 << 40 became 0)
        libc.mallopt(ctypes.c_int(M_MMAP_MAX), ctypes.c_int(0))  # large blocks from the heap, for reuse
        libc.mallopt(ctypes.c_int(M_TRIM_THRESHOLD), ctypes.c_int(2**31 - 1))  # keep the heap's top
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


_allocator_tuned = False
