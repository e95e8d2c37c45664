"""Data parallelism across processes: which rank this process is, and the collective operations
``fit`` and the learners use. Without a process group (world size 1) nothing changes.

Each rank trains on its shard of the same global batch (drawn by every rank from the same seeded
generator), and the gradients are combined into the gradient of the whole batch's mean loss before
any optimiser steps, so N ranks at batch B follow one process at batch N*B to float round-off.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass


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


def average_gradients(grads: list, count: int) -> None:
    """Turn each rank's gradients of its shard's mean loss (``count`` samples) into the gradients of the
    whole global batch's mean loss, in place: the sum over ranks of grad_r * count_r / total.

    ``grads``: NumPy arrays or torch tensors, the same list in the same order on every rank."""
    import numpy as np
    import torch

    total = float(all_sum([count])[0])
    weight = count / total
    for g in grads:
        t = torch.from_numpy(g) if isinstance(g, np.ndarray) else g  # a NumPy array is reduced in place too
        t.mul_(weight)
        torch.distributed.all_reduce(t)
