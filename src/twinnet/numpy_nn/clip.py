"""Gradient clipping by total norm, as ``torch.nn.utils.clip_grad_norm_``."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from twinnet.numpy_nn import backend
from twinnet.numpy_nn.module import Parameter


def clip_grad_norm_(
    parameters: Iterable[Parameter] | Parameter,
    max_norm: float,
    norm_type: float | str = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> np.float64:
    """Scale gradients in place by min(max_norm / (total + 1e-6), 1); returns the total norm before clipping.

    The total is the ``norm_type``-norm of all gradients seen as one vector (``"inf"``: the
    largest magnitude); parameters without a gradient are skipped, as in torch. The total is a
    ``np.float64``: a float that also has torch's ``.item()``. ``foreach`` chooses torch's kernels,
    so it is accepted and changes nothing here.
    """
    if isinstance(parameters, Parameter):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    norm_type = float(norm_type)
    if not grads:
        return np.float64(0.0)
    xp = backend.xp(*grads)
    # The norm of the per-gradient norms equals the norm of their concatenation, without building it.
    # order "K": a view of any densely laid-out gradient (kernel-last conv weights), where "C" would copy
    norms = xp.stack([xp.linalg.norm(g.ravel(order="K"), ord=norm_type) for g in grads])
    total = float(xp.linalg.norm(norms, ord=norm_type))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"the total norm of order {norm_type} of the gradients is {total}; "
            "clipping cannot be done (set error_if_nonfinite=False to clip anyway)"
        )
    coef = float(max_norm) / (total + 1e-6)
    if not coef >= 1.0:  # torch clamps to 1, and a NaN norm makes every gradient NaN
        for g in grads:
            g *= coef
    return np.float64(total)
