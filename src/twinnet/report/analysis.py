"""Sentences of a report's analysis, each derived from a run's measured numbers and carrying them.

Nothing here is written in advance: every function reads records or counts and says what they show,
with the figures that show it, so the same code gives a true sentence for any run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def overfitting(records: Sequence[dict], unit: str = "epoch") -> str:
    """Where the test loss turned up while the training loss kept falling, or that it did not."""
    evals = [r for r in records if "test_loss" in r and "train_loss" in r and r.get("step", 1) > 0]
    if len(evals) < 2:
        return "There are too few evaluations to say whether the network began to overfit."
    best = min(range(len(evals)), key=lambda i: evals[i]["test_loss"])
    at, last = evals[best], evals[-1]
    where = lambda r: f"{unit} {r[unit]:g}" if unit in r else f"step {r['step']:,}"  # noqa: E731
    if best == len(evals) - 1:
        return (f"The test loss was still falling at the last evaluation ({where(last)}: {last['test_loss']:.4f}, "
                f"from {evals[0]['test_loss']:.4f} at {where(evals[0])}): no sign of overfitting within this budget.")
    train_fell = last["train_loss"] < at["train_loss"]
    rise = last["test_loss"] - at["test_loss"]
    return (f"The test loss was lowest at {where(at)} ({at['test_loss']:.4f}) and rose by {rise:.4f} to "
            f"{last['test_loss']:.4f} by {where(last)}, while the training loss "
            + (f"kept falling ({at['train_loss']:.4f} to {last['train_loss']:.4f}): the network overfits after "
               f"{where(at)}" if train_fell else
               f"did not fall further ({at['train_loss']:.4f} to {last['train_loss']:.4f}): noise rather than "
               "overfitting") + ".")


def classes(cm: np.ndarray, names: Sequence[str], weakest: int = 2, pairs: int = 3) -> str:
    """The weakest classes and the most confused pairs of a confusion matrix (rows true, columns predicted)."""
    cm = np.asarray(cm)
    per_class = np.diag(cm) / np.maximum(cm.sum(axis=1), 1)
    order = np.argsort(per_class, kind="stable")
    weak = ", ".join(f"{names[i]} ({100 * per_class[i]:.1f}%)" for i in order[:weakest])
    best = order[-1]
    off = cm.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(off, axis=None, kind="stable")[::-1][:pairs]
    confused = [(int(k // len(names)), int(k % len(names))) for k in flat if off.flat[k] > 0]
    text = (f"The weakest classes are {weak}; the best is {names[best]} ({100 * per_class[best]:.1f}%), "
            f"over an overall test accuracy of {100 * np.trace(cm) / max(cm.sum(), 1):.2f}%.")
    if confused:
        text += " The most frequent confusions are " + ", ".join(
            f"{names[t]} taken for {names[p]} ({cm[t, p]:,} of {cm[t].sum():,} {names[t]} images)" for t, p in confused) + "."
    return text
