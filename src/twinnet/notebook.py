"""What the notebooks in notebooks/ call: run an experiment as ``twinnet run`` does, show its figures."""

from __future__ import annotations

from pathlib import Path

from twinnet.runner import announce, run_experiment


def run(name: str, *settings: str, quick: bool = False, seed: int | None = None, runs_dir: str | Path = "runs",
        data_dir: str | Path | None = None, threads: int | None = None) -> Path:
    """Run experiment ``name`` with ``settings`` ("key=value", as ``--set`` takes them), print its
    headline and run directory as the command does, and return the run directory."""
    given = {"quick": quick, "seed": seed, "runs_dir": runs_dir, "data_dir": data_dir, "threads": threads}
    defaults = {"quick": False, "seed": None, "runs_dir": "runs", "data_dir": None, "threads": None}
    args = [repr(name), *map(repr, settings), *(f"{k}={v!r}" for k, v in given.items() if v != defaults[k])]
    path = run_experiment(name, list(settings), quick=quick, seed=seed, runs_root=Path(runs_dir), threads=threads,
                          data=None if data_dir is None else Path(data_dir), command=f"twinnet.notebook.run({', '.join(args)})")
    announce(path)
    return path


def show(*paths: str | Path, width: float = 5.0) -> None:
    """Draw saved figures (PNG files) side by side, each titled with its file name, and show them
    (in a notebook: inline, once; the figure is not returned, so the cell does not show it twice)."""
    import matplotlib.pyplot as plt

    if not paths:
        raise ValueError("show() needs at least one figure file")
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"no such figure: {', '.join(missing)}")
    images = [plt.imread(p) for p in paths]
    height = max(width * im.shape[0] / im.shape[1] for im in images)
    fig, axes = plt.subplots(1, len(paths), figsize=(width * len(paths), height), squeeze=False)
    for ax, path, image in zip(axes[0], paths, images):
        ax.imshow(image)
        ax.set_title(Path(path).name, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    plt.show()
    plt.close(fig)  # shown (inline, or a window closed by now); outside a notebook it would pile up
