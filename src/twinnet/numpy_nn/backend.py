"""The array module behind the NumPy engine; swap in CuPy where a GPU exists.

Layer code reaches arrays only through ``xp()`` so that ``use("cupy")`` moves the
whole engine without touching a layer.
"""

from __future__ import annotations

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
