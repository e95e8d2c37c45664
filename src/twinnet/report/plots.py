"""Figures drawn from saved run data; every PNG is written atomically."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from twinnet.runs import atomic_write_bytes
from twinnet.twins import relative_differences

# Figures are built without pyplot: they need no display, leave pyplot's backend to the user (a
# notebook's inline figures stay inline) and are freed with their last reference.

# numpy drawn wide and pale beneath torch, so two curves that agree stay both visible
ENGINE_STYLE = {"numpy": dict(color="tab:blue", lw=3.5, alpha=0.5), "torch": dict(color="tab:orange", lw=1.2)}
SPLIT_STYLE = {"train": dict(linestyle="-"), "val": dict(linestyle=":"), "test": dict(linestyle="--")}
CLASS_COLOURS = matplotlib.colormaps["tab10"].colors


def save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def scatter_split(ax, x_train, y_train, x_test, y_test, classes: Sequence[str]) -> None:
    """Points coloured by class; circles for train, triangles for test."""
    for c, name in enumerate(classes):
        colour = CLASS_COLOURS[c % 10]
        ax.scatter(*x_train[y_train == c].T, s=12, marker="o", color=colour, edgecolor="k", linewidth=0.2,
                   label=f"{name} (train)")
        ax.scatter(*x_test[y_test == c].T, s=26, marker="^", color=colour, edgecolor="k", linewidth=0.5,
                   label=f"{name} (test)")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")


def decision_regions(ax, xx, yy, labels, n_classes: int) -> None:
    """Filled regions of the predicted class over a grid."""
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap([CLASS_COLOURS[c % 10] for c in range(n_classes)])
    ax.contourf(xx, yy, labels, levels=np.arange(n_classes + 1) - 0.5, cmap=cmap, alpha=0.25)
    ax.contour(xx, yy, labels, levels=np.arange(n_classes) + 0.5, colors="k", linewidths=0.8)


def curves(ax, series: dict[str, tuple[np.ndarray, np.ndarray]], styles: dict[str, dict], xlabel: str, ylabel: str,
           logy: bool = False) -> None:
    """One line per label: series[label] = (x, y)."""
    for label, (x, y) in series.items():
        ax.plot(x, y, label=label, **styles.get(label, {}))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def figure(ncols: int = 1, width: float = 5.0, height: float = 4.0, nrows: int = 1, **subplots):
    """A figure of nrows x ncols panels, each width x height inches: (figure, 2-D array of axes)."""
    fig = Figure(figsize=(width * ncols, height * nrows))
    return fig, fig.subplots(nrows, ncols, squeeze=False, **subplots)


def confusion(ax, cm: np.ndarray, classes: Sequence[str]) -> None:
    """A confusion matrix normalised per true class: each cell the percentage of that row's images
    predicted as the column's class (rows sum to 100), coloured on one scale from 0 to 100%."""
    share = 100 * cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=100)
    n = len(classes)
    ax.set_xticks(range(n), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (% of each true class)")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{share[i, j]:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if share[i, j] > 50 else "black")


def agreement(ax, ours: np.ndarray, reference: np.ndarray, dtype: str = "float64",
              floor: float = np.finfo(np.float64).tiny) -> None:
    """Per-step relative difference of two curves on a log scale (|ours - reference| / max(|reference|,
    ``floor``)): the steps that differ as points, those that agree exactly counted in the legend (a log
    scale cannot draw 0), and the machine epsilon of the ``dtype`` they were computed in as the line
    round-off lives near. Steps where either curve is not finite are left out."""
    ours, reference = np.asarray(ours, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    finite = np.isfinite(ours) & np.isfinite(reference)
    rel = relative_differences(ours, reference, floor)
    steps = np.arange(1, len(rel) + 1)[finite]
    rel = rel[finite]
    differ = rel > 0
    eps = float(np.finfo(dtype).eps)
    ax.semilogy(steps[differ], rel[differ], ".", ms=2.5, label=f"{differ.sum():,} steps that differ")
    ax.plot([], [], " ", label=f"{(~differ).sum():,} of {len(rel):,} steps equal exactly")
    ax.axhline(eps, color="grey", ls="--", lw=0.8, label=f"{dtype} epsilon ({eps:.1e})")
    top = max(float(rel.max(initial=0.0)), eps)
    ax.set_ylim(eps / 1e3, top * 10)
    ax.set_xlim(0.5, len(rel) + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))  # steps are whole numbers
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
