"""The array module behind the NumPy engine: NumPy, or CuPy for arrays on a GPU.

Layer code asks ``xp(*arrays)`` for the module of the arrays at hand, never a process-wide
setting, so that a model on the CPU and one on the GPU can run side by side in one process;
``Module.to(device=...)`` moves a model's arrays from one to the other.
"""

from __future__ import annotations

import contextlib
import os

import numpy


def is_cupy(a) -> bool:
    """Whether ``a`` is a CuPy array, told by its class's package so that CuPy need not be installed."""
    cls = type(a)  # a NumPy array, the common case, is told without a string operation
    return cls is not numpy.ndarray and cls.__module__.partition(".")[0] == "cupy"


def xp(*arrays):
    """The array module of ``arrays``: CuPy if any of them is a CuPy array, else NumPy."""
    for a in arrays:
        if is_cupy(a):
            import cupy  # noqa: PLC0415 - loaded already, as a CuPy array exists

            return cupy
    return numpy


def _cupy():
    try:
        import cupy  # noqa: PLC0415 - optional, GPU machines only
    except ImportError as exc:  # pragma: no cover - no GPU in CI
        raise RuntimeError("CuPy is not installed; `pip install cupy-cuda12x` on a GPU machine") from exc
    return cupy


def to_device(a, device: str | None = None, dtype=None):
    """``a`` on ``device`` ("cpu": NumPy; "cuda" or "cuda:N": CuPy; None: where it is), cast to ``dtype``
    unless that is None; ``a`` itself where nothing changes."""
    if device is None:
        return xp(a).asarray(a, dtype=dtype)
    if device == "cpu":
        return numpy.asarray(to_numpy(a), dtype=dtype)
    kind, _, index = device.partition(":")
    if kind != "cuda":
        raise ValueError(f"unknown device {device!r}; choose 'cpu', 'cuda' or 'cuda:N'")
    cupy = _cupy()
    with cupy.cuda.Device(int(index) if index else None) as target:  # pragma: no cover - GPU only
        if is_cupy(a) and a.device.id == target.id:
            return cupy.asarray(a, dtype=dtype)
        return cupy.array(a, dtype=dtype)  # a copy from the host, or from another GPU


def as_dtype(dtype) -> numpy.dtype:
    """A parameter's floating NumPy dtype from a NumPy one, its name, or the torch dtype of the same name
    (torch.float64); anything else (an integer type, which torch's Module.to refuses too, or bfloat16, which NumPy
    lacks) is a one-line error."""
    if type(dtype).__module__ == "torch":  # torch.float64 prints as "torch.float64"; torch need not be imported
        dtype = str(dtype).removeprefix("torch.")
    if str(dtype) == "bfloat16":
        raise TypeError("NumPy has no bfloat16, so the NumPy engine has none: give float32 or float64 (torch's "
                        "engine runs bfloat16 by autocast, its amp setting)")
    try:
        found = numpy.dtype(dtype)
    except TypeError:
        found = None
    if found is None or found.kind != "f":
        raise TypeError(f"parameters are floating point: give float32 or float64 (or float16), got {dtype!r}")
    return found


def colsum(a):
    """Column sums of a 2-D array as a matrix-vector product: several times faster than ``sum(axis=0)``."""
    return xp(a).ones(a.shape[0], dtype=a.dtype) @ a


def to_numpy(a):
    """A NumPy array from a NumPy or CuPy array, a torch tensor or a list."""
    if hasattr(a, "detach"):  # torch.Tensor
        return a.detach().cpu().numpy()
    if is_cupy(a):
        return a.get()
    return numpy.asarray(a)


def erf(x):
    """The error function elementwise (SciPy's, or CuPy's on the GPU)."""
    if not is_cupy(x):
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


def parallel(fn, n: int, size: int | None = None, blas: bool = False, blocks: int | None = None,
             like=None) -> None:
    """Call ``fn(slice)`` on contiguous chunks that cover ``range(n)``, shared out between the threads.

    ``size`` (elements of the largest array the chunks cut) lets small jobs run inline, and
    cuts each thread's share into blocks of about ``_BLOCK_ITEMS`` elements, so that a
    function making several passes over its chunk finds it still in cache on the second.
    Chunks must write disjoint outputs; an exception in any chunk is raised here. ``blas``:
    ``fn`` runs matrix products of its own, so the BLAS keeps to one thread while the chunks run.
    ``blocks``: cut the work into this many blocks instead (at least one per thread). ``like``: an
    array the chunks cut; a CuPy one runs ``fn`` once on the whole, as the GPU shares the work out itself.
    """
    here = not is_cupy(like)  # CuPy: no threads (its current device is per thread), no blocks
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


def parallel_items(fn, items: list, sizes: list[int], like=None) -> None:
    """Call ``fn(item)`` for every item, the items shared out between the threads by size (in
    turn, on this thread, where ``like`` is a CuPy array: see ``parallel``)."""
    t = min(num_threads(), len(items))
    if t <= 1 or is_cupy(like) or sum(sizes) < _MIN_ITEMS:
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
    touch: in a training step that is a sizeable share of the time. Called for every run by
    ``runner.run_experiment``; set TWINNET_KEEP_MALLOC=1 to leave the allocator alone.
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
