"""How a student's array is compared with the references: one error per quantity, and what is wrong."""

from __future__ import annotations

import numpy as np

from twinnet.check import rel_error

RTOL = 1e-7  # float64 with another order of sums: about 1e-15; a real bug: far above
ATOL = 1e-10  # for quantities that are exactly zero (a bias gradient before batch norm)


class Wrong(Exception):
    """A quantity the student returned that cannot be compared: None, another shape, not finite."""


def error(name: str, student, references: list) -> float:
    """max|student - ref| / max(max|ref|, ATOL / RTOL) against the worst of ``references``: relative,
    and absolute for a reference near zero (exact zeros compare as 0); ``Wrong`` when the student's value is None, of another shape or dtype, or not finite."""
    if student is None:
        raise Wrong(f"{name} is None (nothing returned, or a starter's placeholder left unfilled)")
    try:
        a = np.asarray(student)
    except Exception:  # noqa: BLE001 - a ragged list, an object of the student's own
        raise Wrong(f"{name} is a {type(student).__name__}, not an array") from None
    if a.dtype == object or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise Wrong(f"{name} is of dtype {a.dtype}, not a float array")
    worst = 0.0
    for ref in references:
        b = np.asarray(ref, dtype=np.float64)
        if a.shape != b.shape and a.size == b.size == 1:
            a = a.reshape(b.shape)  # a loss as a 0-d array, a 1-element array or a float
        if a.shape != b.shape:
            raise Wrong(f"{name} has shape {a.shape}, expected {b.shape}")
        if not np.all(np.isfinite(a)) and np.all(np.isfinite(b)):
            raise Wrong(f"{name} is not finite ({'nan' if np.isnan(a).any() else 'inf'}; the reference is finite)")
        if a.dtype != np.float64 and np.issubdtype(a.dtype, np.floating):
            raise Wrong(f"{name} is {a.dtype}; float64 inputs must give float64")
        worst = max(worst, rel_error(a, b, ATOL / RTOL))  # relative, absolute near zero
    return worst


def passes(err: float) -> bool:
    """Whether an error (from ``error``) is within the tolerance: |a - b| <= max(RTOL * max|b|, ATOL)."""
    return err <= RTOL


def all_unchanged(names, before, after) -> None:
    """``unchanged`` for each input: ``names``, the arrays given, and the copies the student's call received."""
    for name, given, kept in zip(names, before, after):
        unchanged(name, given, kept)


def unchanged(name: str, before, after) -> None:
    """``Wrong`` if an input the student's call received was written into."""
    if before is None:
        return
    if not np.array_equal(np.asarray(before), np.asarray(after), equal_nan=True):
        raise Wrong(f"modified its input {name} in place")


def scale_hint(student, references: list) -> str:
    """Where a failed ``student`` value is exactly the reference times a constant (a mean where the convention
    sums, or the other way round; a flipped sign): "; it is exactly c times the expected value", else ""."""
    try:
        a, b = np.asarray(student, dtype=np.float64), np.asarray(references[0], dtype=np.float64)
    except (TypeError, ValueError, IndexError):
        return ""
    if a.shape != b.shape or np.count_nonzero(b) < 1 or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return ""
    with np.errstate(all="ignore"):
        c = float((a * b).sum() / (b * b).sum())
        if not np.isfinite(c) or c == 0 or not np.isfinite(1 / c):
            return ""
        if abs(c - 1) < 1e-5 or not np.abs(a - c * b).max() <= 1e-9 * np.abs(a).max():
            return ""
        # one number is always some multiple of another: only a whole factor (or its inverse) to nine digits is
        # evidence of one there, such as a loss summed over a batch where its mean belongs
        single = np.count_nonzero(b) < 2
        whole, inverse = round(c), round(1 / c)
        flipped = abs(c + 1) < 1e-9
        if flipped:
            return "" if single else "; it is exactly the expected value with its sign flipped"
        if abs(c - whole) < 1e-9 * abs(c):
            text = f"{whole} times the expected value"
        elif abs(1 / c - inverse) < 1e-9 * abs(1 / c):
            text = f"{'-' if inverse < 0 else ''}1/{abs(inverse)} times the expected value"
        elif single:
            return ""
        else:
            text = f"{c:.10g} times the expected value"
    return f"; it is exactly {text} (a constant factor: a mean where a sum belongs, or the other way round?)"
