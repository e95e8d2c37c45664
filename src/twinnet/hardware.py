"""The machine a run finds: its CPU, whether that CPU has bfloat16 arithmetic, and the threads to use.

Defaults adapt to what is found here. bfloat16 autocast on a CPU without native bf16 (AVX2 only)
is emulated and trained the reduced VGG 18x slower than float32 (docs/RESULTS.md), so
``amp="auto"`` turns it on only where torch reports native support. The thread count defaults to
the cores other processes leave idle: with other processes on both of two cores, two threads of
small matrix products took 10x longer than one (docs/RESULTS.md).
"""

from __future__ import annotations

import os
import platform
import sys
import time
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any


def cpu_name() -> str:
    """The CPU model as the OS names it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (a container's
    ``--cpus``) where there is one."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    for read in (_cgroup2_quota, _cgroup1_quota):
        try:
            quota, period = read()
        except (OSError, ValueError):
            continue
        if quota > 0 and period > 0:
            n = min(n, max(1, -(-quota // period)))
    return n


def _cgroup2_quota() -> tuple[int, int]:
    """cgroup v2's CPU quota and period (``max``: none, read as -1)."""
    quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    return (-1 if quota == "max" else int(quota)), int(period)


def _cgroup1_quota() -> tuple[int, int]:
    """cgroup v1's CPU quota and period (a quota of -1: none)."""
    base = Path("/sys/fs/cgroup/cpu")
    if not base.is_dir():
        base = Path("/sys/fs/cgroup/cpu,cpuacct")
    return int((base / "cpu.cfs_quota_us").read_text()), int((base / "cpu.cfs_period_us").read_text())


def memory_bytes() -> int | None:
    """The memory this process may use, in bytes: the machine's physical memory, capped by a cgroup memory limit
    (a container's ``--memory``) where there is one, past which Linux kills the process as it would past the
    machine's own; None where the system does not say."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # pragma: no cover - not POSIX
        total = None
    for read in (_cgroup2_memory, _cgroup1_memory):
        try:
            limit = read()
        except (OSError, ValueError):
            continue
        if limit > 0 and (total is None or limit < total):
            total = limit
    return total


def _cgroup2_memory() -> int:
    """cgroup v2's memory limit (``max``: none, read as -1)."""
    text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    return -1 if text == "max" else int(text)


def _cgroup1_memory() -> int:
    """cgroup v1's memory limit (none: a number near 2**63, above any machine's memory)."""
    return int(Path("/sys/fs/cgroup/memory/memory.limit_in_bytes").read_text())


def check_fits(nbytes: float, what: str) -> None:
    """Refuse, before anything is built, a setting whose training needs more than this machine's memory
    (``nbytes``, a lower estimate): Linux would let it allocate and then kill the process without a word."""
    total = memory_bytes()
    if total is not None and nbytes > total:
        from twinnet import TwinnetError

        raise TwinnetError(f"{what} needs at least {_size(nbytes)} of memory to train, and this machine has "
                           f"{_size(total)}; make it smaller")


def _size(nbytes: float) -> str:
    """Bytes as whole MiB below 1 GiB, else GiB to a tenth where that is not whole ("9 GiB", "1.5 GiB")."""
    if nbytes < 2**30:
        return f"{nbytes / 2**20:,.0f} MiB"
    return f"{nbytes / 2**30:,.1f}".removesuffix(".0") + " GiB"


def cpu_capability() -> str:
    """The widest SIMD instruction set torch's CPU kernels use here (e.g. AVX2, AVX512)."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


def _forced(variable: str) -> bool | None:
    """An environment variable's override of a CPU feature: 0 or 1, else None (the CPU is asked; another value is
    ignored with a warning)."""
    forced = os.environ.get(variable)
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        warnings.warn(f"{variable}={forced!r} is neither 0 nor 1, so it is ignored (the CPU is asked)", stacklevel=3)
    return None


@lru_cache(maxsize=1)
def cpu_bf16() -> bool:
    """Whether this CPU does bfloat16 arithmetic natively: AVX512-BF16 or AMX on x86 (as torch's
    cpuinfo sees them), the bf16 feature on Arm. (oneDNN's own "bf16 supported" also says yes on
    AVX-512 CPUs without these, where it emulates bf16.)

    ``TWINNET_CPU_BF16=0`` (or ``1``) overrides the answer: a test or benchmark can take the
    path of a CPU without bf16 on any machine."""
    forced = _forced("TWINNET_CPU_BF16")
    if forced is not None:
        return forced
    import torch

    for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        try:
            if getattr(torch.cpu, check)():
                return True
        except (AttributeError, RuntimeError):  # an older torch, or not x86
            pass
    try:
        features = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("Features")]
        return bool(features) and "bf16" in features[0].split()
    except OSError:
        return False


@lru_cache(maxsize=1)
def cpu_amx() -> bool:
    """Whether this CPU has AMX tiles for bf16 matmuls (Intel Xeon 4th generation on), as torch's cpuinfo sees it.
    ``TWINNET_CPU_AMX=0`` (or ``1``) overrides the answer, as ``TWINNET_CPU_BF16`` does for bf16."""
    forced = _forced("TWINNET_CPU_AMX")
    if forced is not None:
        return forced
    import torch

    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # an older torch, or not x86
        return False


def resolve_conv_weight_grad(setting: str, device: str, amp: bool) -> bool:
    """Whether a torch run computes small maps' 3x3 weight gradients as matmuls (``torch_nn.conv_grad``):
    ``"auto"`` means only on a CPU with AMX under bf16 autocast, where it was measured faster
    (docs/RESULTS.md, sessions 39-40); ``"matmul"`` always, ``"library"`` never."""
    if setting == "auto":
        return device == "cpu" and amp and cpu_amx()
    return setting == "matmul"


_warned_amp = False


def resolve_amp(amp: bool | str, device: str) -> bool:
    """Whether a torch run uses bfloat16 autocast: ``"auto"`` means on CUDA, and on a CPU only
    with native bf16. An explicit ``True`` on a CPU without it is honoured, with one warning."""
    global _warned_amp
    if amp == "auto":
        if device == "cuda":
            return _cuda_bf16()  # Ampere on; emulated before
        return cpu_bf16()
    if amp and device == "cpu" and not cpu_bf16() and not _warned_amp:
        _warned_amp = True
        warnings.warn(f"amp=true on a CPU without native bfloat16 ({cpu_name()}, {cpu_capability()}): bfloat16 "
                      "autocast is emulated here and trained the reduced VGG 18x slower than float32 "
                      "(docs/RESULTS.md); --set amp=auto (the default) uses float32 on this CPU",
                      stacklevel=2)
    if amp and device == "cuda" and not _warned_amp and not _cuda_bf16():
        _warned_amp = True
        warnings.warn("amp=true on a GPU without native bfloat16 (before NVIDIA's Ampere: a T4, a V100): bfloat16 "
                      "autocast is emulated there, if its kernels run at all; --set amp=auto (the default) uses "
                      "float32 on this GPU", stacklevel=2)
    return bool(amp)


def _cuda_bf16() -> bool:
    """Whether the GPU in use has native bfloat16 arithmetic (Ampere and later)."""
    import torch

    return bool(torch.cuda.is_bf16_supported(including_emulation=False))


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of the CPUs this process may use, since boot; None where /proc/stat
    does not say."""
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:  # pragma: no cover - not Linux
        allowed = None
    idle = total = 0
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            name, *fields = line.split()
            if not name.startswith("cpu") or name == "cpu" or (allowed is not None and int(name[3:]) not in allowed):
                continue
            values = [int(v) for v in fields[:8]]
            idle += values[3] + values[4]
            total += sum(values)
    except (OSError, ValueError, IndexError):
        return None
    return (idle, total) if total else None


def idle_cores(sample_s: float = 0.2) -> float | None:
    """Cores left idle by other processes, sampled over ``sample_s`` seconds (this process's own
    use subtracted); None where the OS does not say."""
    before, own = _cpu_times(), time.process_time()
    if before is None:
        return None
    start = time.perf_counter()
    time.sleep(sample_s)
    after, own = _cpu_times(), time.process_time() - own
    wall = time.perf_counter() - start
    if after is None or after[1] <= before[1]:
        return None
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        n = os.cpu_count() or 1
    busy_fraction = 1 - (after[0] - before[0]) / (after[1] - before[1])
    others = max(0.0, busy_fraction * n - own / max(wall, 1e-9))
    return max(0.0, min(cores(), n - others))


MAX_THREADS_PER_CORE = 8  # above this, a thread count is a mistake, not oversubscription by choice


def check_thread_count(threads: int, given: str) -> None:
    """Refuse a thread count far beyond the cores (OpenBLAS and OpenMP fail on thousands of threads)."""
    if threads > MAX_THREADS_PER_CORE * cores():
        from twinnet import TwinnetError

        raise TwinnetError(f"{given} is more than {MAX_THREADS_PER_CORE}x this machine's {cores()} cores; use at "
                           f"most {cores()} (one per core is fastest)")


def default_threads() -> tuple[int, str]:
    """The thread count a run takes when none is given, and what chose it: ``TWINNET_THREADS`` if
    set, else the cores other processes leave idle right now (at least one), so that a busy machine
    does not make threads wait on each other for a core."""
    env = os.environ.get("TWINNET_THREADS")
    if env:
        if not (env.strip().isascii() and env.strip().isdigit()) or int(env) < 1:  # "²" is no int()
            from twinnet import TwinnetError

            raise TwinnetError(f"TWINNET_THREADS={env!r}: expected an integer >= 1; set it right or unset it")
        check_thread_count(int(env), f"TWINNET_THREADS={env}")
        return int(env), "TWINNET_THREADS"
    free = idle_cores()
    if free is None:
        return cores(), "cores"
    return max(1, min(cores(), int(free + 0.5))), "idle cores"


def set_threads(threads: int) -> None:
    """Give torch, NumPy's BLAS and the NumPy engine's own elementwise threads one thread count."""
    import torch
    from threadpoolctl import threadpool_limits

    from twinnet.numpy_nn import backend

    torch.set_num_threads(threads)
    threadpool_limits(threads)
    backend.set_num_threads(threads)


def describe(threads: int, threads_chosen_by: str) -> dict[str, Any]:
    """What env.json records of the hardware and the thread settings applied."""
    import torch
    from threadpoolctl import threadpool_info

    from twinnet.numpy_nn import backend

    return {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "cpu_capability": cpu_capability(),
        "cpu_bf16": cpu_bf16(),
        "cpu_amx": cpu_amx(),
        "threads": threads,
        "threads_chosen_by": threads_chosen_by,  # "--threads", "TWINNET_THREADS" or "idle cores"
        "torch_threads": torch.get_num_threads(),
        "blas_threads": sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}),
        "engine_threads": backend.num_threads(),
    }


def die_with_parent(sig: int) -> None:
    """Ask Linux to send this process ``sig`` when the thread that started it ends, however it ends (even
    SIGKILL), so that no worker or grading process runs on as an orphan. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):  # pragma: no cover
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no prctl: the parent's own handlers still end it
        pass
