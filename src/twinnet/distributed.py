"""Data parallelism across processes: which rank this process is, how a ``torchrun`` launch joins
its process group, and the collective operations ``fit``, the learners and checkpoints use. Without
a process group (world size 1) nothing changes.

Each rank trains on its shard of the same global batch (drawn by every rank from the same seeded
generator), and the gradients are combined into the gradient of the whole batch's mean loss before
any optimiser steps, so N ranks at batch B follow one process at batch N*B to float round-off.
Batch norm keeps per-rank batch statistics (as DistributedDataParallel does without SyncBatchNorm,
which PyTorch refuses on a CPU): N ranks at batch B equal one process that normalises each B-sized
part of its N*B batch separately ("ghost batches"). The running statistics are averaged over the
ranks before every evaluation and checkpoint, so every rank evaluates the same model.
"""

from __future__ import annotations

import datetime
import math
import os
import sys
from dataclasses import dataclass

from twinnet import TwinnetError

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
MAX_DIST_TIMEOUT_S = 7 * 86400.0  # TWINNET_DIST_TIMEOUT's largest: a week (timedelta's and gloo's range hold it)


class ReportedByRank0(TwinnetError):
    """An error rank 0 met and reports: the other ranks end with it silently."""

    every_rank = True


def refusal(message: str) -> TwinnetError:
    """A ``TwinnetError`` every rank raises alike (rank 0 alone prints it)."""
    error = TwinnetError(message)
    error.every_rank = True
    return error


@dataclass(frozen=True)
class World:
    """This process's place among the processes training one model."""

    rank: int = 0
    size: int = 1


def world() -> World:
    """The current process group's rank and size (``World()`` without one)."""
    torch = sys.modules.get("torch")  # not imported: there is no process group
    if torch is None or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return World()
    return World(torch.distributed.get_rank(), torch.distributed.get_world_size())


def launch_rank() -> int:
    """This process's rank as its launcher set it (0 without one), known before the group is joined."""
    if not launched():
        return 0
    try:
        return int(os.environ["RANK"])
    except ValueError:
        return 0


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (or another launcher that sets its variables)."""
    return all(os.environ.get(k) for k in TORCHRUN_VARS)


def local_size() -> int:
    """How many ranks share this machine (torchrun's ``--nproc_per_node``)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def init_from_env(cuda: bool) -> str:
    """Join the process group ``torchrun`` describes in the environment: where CUDA is present, NCCL
    for CUDA tensors (each rank on the GPU of its local rank) and gloo for CPU ones; else gloo alone.
    Returns the backend's name.

    ``TWINNET_DIST_TIMEOUT`` (seconds, default 600): how long a collective waits for a lost rank
    before failing, instead of hanging."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return dist.get_backend()
    text = os.environ.get("TWINNET_DIST_TIMEOUT", "600")
    try:
        timeout = float(text)
    except ValueError:
        timeout = math.nan
    if not 1 <= timeout <= MAX_DIST_TIMEOUT_S:  # nan too: a collective must fail in its time, not at once or never
        raise TwinnetError(f"TWINNET_DIST_TIMEOUT={text!r}: must be a number of seconds from 1 to "
                           f"{MAX_DIST_TIMEOUT_S:g} (how long a collective waits for a lost rank; 600 by default)")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):  # as torchrun sets them: blamed on them, not on the network
        value = os.environ.get(name, "0")
        if not (value.isascii() and value.isdigit()):
            raise TwinnetError(f"{name}={value!r}: must be a whole number >= 0, as torchrun sets it; launch with "
                               "torchrun, or unset the torchrun variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, "
                               "MASTER_PORT) to train in one process")
    if (rank := int(os.environ.get("RANK", "0"))) >= (size := int(os.environ.get("WORLD_SIZE", "1"))):
        raise TwinnetError(f"RANK={rank} is not below WORLD_SIZE={size}: ranks run from 0 to WORLD_SIZE - 1, as "
                           "torchrun sets them")
    backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"  # CPU tensors (the loop's sums) always over gloo
    if cuda:
        local, gpus = int(os.environ["LOCAL_RANK"]), torch.cuda.device_count()
        if local >= gpus:
            raise TwinnetError(f"this node runs a rank on local GPU {local}, but torch sees {gpus} GPU(s) here; launch "
                               f"at most {gpus} process(es) per node (--nproc_per_node), or train on the CPU with "
                               "--set device=cpu (a resumed run: CUDA_VISIBLE_DEVICES= hides the GPUs)")
        torch.cuda.set_device(local)
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
    except Exception as e:  # noqa: BLE001 - an unreachable rendezvous, a port taken, ...: one line
        raise TwinnetError(f"cannot join the torchrun process group ({backend}): {str(e).splitlines()[0][:200]}; "
                           "check --rdzv-endpoint / MASTER_ADDR and that every node can reach it (on one machine, "
                           "GLOO_SOCKET_IFNAME=lo avoids a host name that does not resolve)") from None
    return backend


def close() -> None:
    """Leave the process group, if there is one."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def shard(n: int, w: World) -> slice:
    """This rank's contiguous share of ``n`` items (shares differ by at most one item)."""
    return slice(n * w.rank // w.size, n * (w.rank + 1) // w.size)


def all_sum(values):
    """Elementwise sums over the ranks of a float64 array (or nested list) of equal shape on every rank."""
    import numpy as np
    import torch

    t = torch.as_tensor(np.asarray(values, dtype=np.float64))
    torch.distributed.all_reduce(t)
    return t.numpy()


def broadcast(obj):
    """Rank 0's ``obj`` (any picklable object), on every rank."""
    import torch

    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def agree(flag: bool) -> bool:
    """Rank 0's decision (made by its own clock, say), on every rank."""
    return bool(all_sum([float(flag) if world().rank == 0 else 0.0])[0])


def gather(obj) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    import torch

    out = [None] * world().size
    torch.distributed.all_gather_object(out, obj)
    return out


def _tensor(a):
    import numpy as np
    import torch

    return torch.from_numpy(a) if isinstance(a, np.ndarray) else a  # a NumPy array is changed in place too


def average_gradients(grads: list, count: int, total: int) -> None:
    """Turn each rank's gradients of its shard's mean loss (``count`` of the global batch's ``total``
    samples) into the gradients of the whole global batch's mean loss, in place: the sum over ranks
    of grad_r * count_r / total. ``grads``: NumPy arrays or torch tensors, the same list in the same
    order on every rank."""
    import torch

    for g in grads:
        t = _tensor(g)
        t.mul_(count / total)
        torch.distributed.all_reduce(t)


def average(arrays: list) -> None:
    """Replace each floating-point array (NumPy or torch) by its mean over the ranks, in place."""
    import torch

    size = world().size
    for a in arrays:
        t = _tensor(a)
        if t.is_floating_point():
            torch.distributed.all_reduce(t)
            t.div_(size)


def copy_from_rank0(arrays: list) -> None:
    """Give every rank rank 0's values of ``arrays`` (NumPy or torch), in place."""
    import torch

    for a in arrays:
        torch.distributed.broadcast(_tensor(a), src=0)


def other_world(saved: int, now: int) -> str:
    """Why a run saved by ``saved`` ranks cannot go on with ``now``, and how to resume it."""
    launch = ("without torchrun (or with 1 process)" if saved == 1 else
              f"under torchrun with {saved} processes in all (--nnodes x --nproc_per_node)")
    return (f"it was started by {saved} process{'es' if saved > 1 else ''} and this is {now}: its global batch, and "
            f"each rank's random stream, belong to that number; resume it {launch}")


def rank_seed(seed: int, rank: int) -> int:
    """A seed of this rank's own random stream, drawn from a seed every rank shares."""
    import numpy as np

    # the shift on a Python int: NumPy 1's promotion turns uint64 >> int into float64, which has no shift
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0]) >> 1
