"""``twinnet reproduce``: the assignment's runs as jobs of one sweep, one report over them, resumable."""

import json
import re

import pytest

from fake_data import write_cifar_tree, write_mnist
from twinnet.cli import main


def test_the_parts_choose_the_jobs_and_full_adds_seeds_to_the_headline_presets():
    from twinnet.experiments.reproduce import PARTS, ReproduceConfig

    jobs = ReproduceConfig().jobs()
    assert [j.key for _, j in jobs] == [key for part in PARTS.values() for key, _, _ in part[1]]
    cnn = [(p, j) for p, j in ReproduceConfig(parts="cnn", level="full").jobs()]
    assert {p for p, _ in cnn} == {"cnn"}
    keys = [j.key for _, j in cnn]
    assert keys[keys.index("cnn-vgg-best"):keys.index("cnn-vgg-best") + 3] == [
        "cnn-vgg-best", "cnn-vgg-best-seed1", "cnn-vgg-best-seed2"]
    seeds = {j.key: j.seed for _, j in ReproduceConfig(parts="cnn", level="full", seed=5).jobs()}
    assert (seeds["mnist-numpy"], seeds["mnist-numpy-seed2"], seeds["cnn-vgg"]) == (5, 7, 5)
    numpy_vgg = next(j for _, j in jobs if j.key == "cnn-vgg-numpy")
    assert (numpy_vgg.experiment, numpy_vgg.values) == ("cnn-vgg", {"engine": "numpy"})
    unverified = {j.key: j.values for _, j in ReproduceConfig(verify=False).jobs()}
    assert unverified["mnist-numpy"]["verify"] is False and "verify" not in unverified["palindrome-sweep"]
    with pytest.raises(ValueError, match="unknown part"):
        ReproduceConfig(parts="mlp,cnm")


def test_reproduce_quick_writes_one_report_over_its_runs_and_continues_where_it_stopped(tmp_path, monkeypatch,
                                                                                          capsys):
    monkeypatch.setenv("TWINNET_CACHE_DIR", str(tmp_path / "cache"))
    data, out = tmp_path / "data", tmp_path / "repro"
    write_mnist(data / "mnist")
    write_cifar_tree(data / "cifar10", (10, 2))
    args = ["reproduce", "--quick", "--parts", "mlp,engine", "--data-dir", str(data), "--out", str(out),
            "--threads", "1"]
    assert main(args) == 0
    capsys.readouterr()
    report = (out / "report.md").read_text()
    titles = re.findall(r"^## (.+)$", report, flags=re.M)
    assert titles[:3] == ["Overview", "Part 1: the MLP, NumPy against PyTorch, on toy data and on CIFAR-10",
                          "The engine: the NumPy networks against PyTorch's"]
    runs = ["mlp-compare", "mlp-cifar", "mlp-cifar-best", "engine-check"]
    for run in runs:  # each a complete run of its own, linked from the overview, its findings shown here
        assert (out / run / "report.md").is_file() and f"[{run}]({run}/report.md)" in report
        assert re.search(rf"^### {re.escape(run)}: ", report, flags=re.M)
    figures = re.findall(r"!\[[^]]*\]\(([^)]+)\)", report)
    assert figures and all((out / f).is_file() for f in figures)
    assert any(f.startswith("engine-check/") for f in figures) and any(f.startswith("mlp-compare/") for f in figures)
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(figures)
    summary = json.loads((out / "summary.json").read_text())
    assert [r["job"] for r in summary["runs"]] == runs
    # again: nothing trains twice; a part added runs alone
    stamp = (out / "mlp-cifar" / "metrics.jsonl").stat().st_mtime_ns
    assert main(args) == 0
    assert "4 runs already finished, 0 to run" in capsys.readouterr().err
    assert (out / "mlp-cifar" / "metrics.jsonl").stat().st_mtime_ns == stamp
    # the wrong folder, or the wrong size, is refused before anything is written
    assert main(["reproduce", "--parts", "engine", "--out", str(out)]) == 2
    assert "holds a quick reproduce run; add --quick" in capsys.readouterr().err
    assert main(["reproduce", "--quick", "--out", str(out / "mlp-cifar")]) == 2
    assert "not a reproduce run" in capsys.readouterr().err
    assert main(["reproduce", "--quick", "--parts", "gan", "--out", str(tmp_path / "new")]) == 2
    assert "unknown part" in capsys.readouterr().err and not (tmp_path / "new").exists()


def test_engine_check_passes_the_twins_and_names_a_model_whose_numpy_layer_is_wrong(tmp_path, monkeypatch, capsys):
    from twinnet.numpy_nn.activation import ReLU

    out = tmp_path / "ok"
    assert main(["run", "engine-check", "--set", "models=mlp,mnist-cnn,palindrome-lstm", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["passed"] and s["worst"] < 1e-10 and [r["model"] for r in s["rows"]] == ["mlp", "mnist-cnn",
                                                                                       "palindrome-lstm"]
    assert "Every model agrees" in (out / "report.md").read_text()
    # a ReLU whose backward lets the gradient through where the input was negative
    popped = ReLU.backward
    monkeypatch.setattr(ReLU, "backward", lambda self, dout: (popped(self, dout), dout)[1])
    bad = tmp_path / "bad"
    assert main(["run", "engine-check", "--set", "models=mlp,palindrome-lstm", "--out", str(bad)]) == 0
    rows = {r["model"]: r for r in json.loads((bad / "summary.json").read_text())["rows"]}
    assert not rows["mlp"]["passed"] and rows["mlp"]["dx"] > 1e-3 and rows["palindrome-lstm"]["passed"]
    assert "**mlp disagree(s)**" in (bad / "report.md").read_text()
    capsys.readouterr()
    assert main(["run", "engine-check", "--set", "models=mlp,resnet"]) == 2
    assert "unknown model(s) resnet" in capsys.readouterr().err
