"""The notebooks in notebooks/ run against the library as it is: their code cells, in order, at the
smoke-test sizes (TWINNET_NOTEBOOK_QUICK=1), with their own checks of the engines' agreement holding."""

import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from twinnet.notebook import show  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def code_cells(path: Path) -> list[str]:
    notebook = json.loads(path.read_text())
    assert notebook["nbformat"] == 4
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]


def execute(name: str, tmp_path, monkeypatch, data_dir: Path | None = None) -> dict:
    """Run a notebook's code cells in one namespace, in a fresh folder, as Jupyter would; return it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TWINNET_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("TWINNET_CACHE_DIR", str(tmp_path / "cache"))
    if data_dir is None:
        monkeypatch.delenv("TWINNET_DATA_DIR", raising=False)
    else:
        monkeypatch.setenv("TWINNET_DATA_DIR", str(data_dir))
    shown = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(plt.gcf()))
    namespace: dict = {"__name__": "__main__"}
    try:
        for i, source in enumerate(code_cells(NOTEBOOKS / f"{name}.ipynb")):
            exec(compile(source, f"{name}.ipynb cell {i}", "exec"), namespace)
    finally:
        plt.close("all")
    namespace["shown figures"] = shown
    return namespace


def test_the_notebooks_are_the_three_networks():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == ["01_mlp_twins", "02_image_networks",
                                                                 "03_palindromes"]
    for path in NOTEBOOKS.glob("*.ipynb"):  # shipped without outputs: no stale results, no bulk
        cells = json.loads(path.read_text())["cells"]
        assert all(c.get("outputs", []) == [] for c in cells if c["cell_type"] == "code"), path.name


def test_each_notebook_imports_twinnet_before_numpy():
    # twinnet sets OPENBLAS_THREAD_TIMEOUT, which OpenBLAS reads once, when NumPy loads it: imported
    # after NumPy, the notebook's in-process training would run at the slower setting
    for path in NOTEBOOKS.glob("*.ipynb"):
        lines = code_cells(path)[0].splitlines()
        first = {name: next(i for i, line in enumerate(lines) if line.startswith(("import " + name, "from " + name)))
                 for name in ("twinnet", "numpy")}
        assert first["twinnet"] < first["numpy"], path.name


def test_mlp_notebook(tmp_path, monkeypatch):
    ns = execute("01_mlp_twins", tmp_path, monkeypatch)
    assert max(ns["agreement"].values()) < 1e-12
    assert ns["path"].parent == Path("runs") / "mlp-compare" and (tmp_path / ns["path"] / "report.md").is_file()
    assert {d: a["max_rel_loss_diff"] < 1e-9 for d, a in ns["summary"]["agreement"].items()} == \
        {"moons": True, "circles": True, "blobs": True}
    assert len(ns["shown figures"]) == 2 and [len(f.axes) for f in ns["shown figures"]] == [2, 2]


@pytest.mark.slow
@pytest.mark.parametrize("with_data", (False, True), ids=("no-data", "mnist"))
def test_image_notebook(tmp_path, monkeypatch, capsys, with_data):
    if with_data and not (REAL_DATA / "mnist").is_dir():
        pytest.skip(f"the real MNIST files are not in {REAL_DATA / 'mnist'}")
    ns = execute("02_image_networks", tmp_path, monkeypatch, REAL_DATA if with_data else None)
    out = capsys.readouterr().out
    assert out.count("total") >= 2 and "9,231,114" in out  # both engines' VGG tables and their total
    zero = {n for n, g in ns["largest"].items() if g < 1e-12}
    assert zero == {"0.bias", "4.bias"}  # the convolutions' biases, each just before a batch norm
    assert max(r for n, r in ns["agreement"].items() if n not in zero) < 1e-12
    if with_data:
        summary = json.loads((tmp_path / ns["path"] / "summary.json").read_text())
        assert summary["dataset"] == "mnist" and summary["engine"] == "numpy" and summary["test_acc"] > 0.2
        assert len(ns["shown figures"]) == 1
    else:
        assert "path" not in ns and "No TWINNET_DATA_DIR" in out and ns["shown figures"] == []


@pytest.mark.slow
def test_palindrome_notebook(tmp_path, monkeypatch):
    ns = execute("03_palindromes", tmp_path, monkeypatch)
    assert (ns["first_digits"] == ns["labels"]).all() and ns["inputs"].shape == (4, 6, 10)
    sweep = json.loads((tmp_path / ns["path"] / "summary.json").read_text())
    assert ns["path"].parent == Path("runs") / "palindrome-sweep-best"
    assert set(sweep["longest_T_99"]) == {"rnn", "lstm", "gru"} and (sweep["runs"], sweep["missing_runs"]) == (12, 0)
    assert len(ns["shown figures"]) == 3


def test_show_draws_each_file_titled_with_its_name(tmp_path, monkeypatch):
    images = {"a.png": np.zeros((20, 40, 3)), "b.png": np.ones((10, 10, 3))}
    for name, image in images.items():
        plt.imsave(tmp_path / name, image)
    shown = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(plt.gcf()))
    assert show(*(tmp_path / n for n in images), width=4) is None and len(shown) == 1
    fig = shown[0]
    try:
        assert [ax.get_title() for ax in fig.axes] == list(images)
        for ax, image in zip(fig.axes, images.values()):
            np.testing.assert_array_equal(ax.images[0].get_array()[..., :3], image)
        assert tuple(fig.get_size_inches()) == (8.0, 4.0)  # two of width 4; the square one sets the height
    finally:
        plt.close(fig)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        show(tmp_path / "a.png", tmp_path / "missing.png")
    with pytest.raises(ValueError):
        show()


STUDENTS = Path(__file__).parent / "students"
LABS = {  # notebook: (the reference solution's file, a planted bug, the layer it breaks, what the check says)
    "01_mlp_twins": ("layers.py", "cs231n_backward_zeros.py", "relu", "dx: relative error 1.00e+00"),
    "02_image_networks": ("layers.py", "cs231n_conv_stride.py", "conv", "s=2 p=0: dw: relative error"),
    "03_palindromes": ("rnn_layers.py", "cs231n_rnn_bptt.py", "rnn", "dx: relative error"),
}


def _lab(name: str, *solutions: Path | None) -> dict:
    """Run a notebook's exercise cell, or the given solution files in its place, then its check cell."""
    cells = code_cells(NOTEBOOKS / f"{name}.ipynb")
    exercise = next(c for c in cells if c.startswith("# EXERCISE"))
    check = next(c for c in cells if c.startswith("# CHECK"))
    namespace: dict = {"__name__": "__main__"}
    for source, label in ([(exercise, "exercise")] if not solutions else [(s.read_text(), s.name) for s in solutions]):
        exec(compile(source, f"{name}.ipynb {label}", "exec"), namespace)
    exec(compile(check, f"{name}.ipynb check", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("name", sorted(LABS))
def test_each_notebook_is_a_lab_whose_check_passes_a_solution_and_names_a_planted_bug(name, capsys):
    solution, bug, kind, named = LABS[name]
    as_shipped = _lab(name)["report"]  # stubs that raise: every configuration fails, saying so
    assert all(r.total and r.passed == 0 for r in as_shipped.rows)
    assert all("raised NotImplementedError: write" in r.first_failure for r in as_shipped.rows)
    assert _lab(name, STUDENTS / "cs231n" / solution)["report"].ok
    bugged = {r.kind: r for r in _lab(name, STUDENTS / "cs231n" / solution, STUDENTS / "bugs" / bug)["report"].rows}
    assert bugged[kind].passed < bugged[kind].total and any(named in f for f in bugged[kind].failures)
    assert "FAILED" in capsys.readouterr().out  # the table was printed, as the student sees it
