"""Image experiments end to end on small fake IDX files (the real MNIST is never needed here)."""

import json

import numpy as np
import pytest

from fake_data import write_mnist
from twinnet.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data") / "mnist"
    write_mnist(d, 600, 200)
    return d.parent


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TWINNET_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_mnist_quick_run_writes_every_artefact(engine, data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "mnist-numpy", "--quick", "--data-dir", str(data_dir), "--out", str(out),
                 "--set", "verify=false", "--set", f"engine={engine}"])
    assert code == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1] == str(out) and f"mnist-cnn ({engine}) on mnist" in printed[-2]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["engine"] == engine and summary["params"] == 421_834
    assert set(summary["per_class_acc"]) == {str(d) for d in range(10)}
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 4]  # 256 samples / batch 64, one epoch
    for name in ("curves.png", "confusion.png"):
        assert (out / name).read_bytes().startswith(PNG_MAGIC)
    report = (out / "report.md").read_text()
    assert "![confusion.png](confusion.png)" in report and "mnist-cnn — numpy engine" in report
    assert "mnist-cnn — torch engine" in report and "Total parameters: **421,834**" in report


def test_the_numpy_engine_learns_the_fake_digits(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "mnist-numpy", "--data-dir", str(data_dir), "--out", str(out), "--set", "verify=false",
                 "--set", "epochs=3", "--set", "batch_size=32", "--set", "lr=0.003"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_acc"] >= 0.95
    preds = np.load(out / "predictions.npz")
    assert len(preds["y_pred"]) == 200 and (preds["y_pred"] == preds["y_true"]).mean() == summary["test_acc"]


def test_missing_data_is_one_clear_line(tmp_path, capsys):
    empty = tmp_path / "nothing"
    empty.mkdir()
    assert main(["run", "mnist-numpy", "--quick", "--data-dir", str(empty), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("twinnet: error:") and "train-images-idx3-ubyte" in err[0]
    assert not (tmp_path / "r").exists()  # a run that measured nothing leaves nothing behind


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    """A tiny CIFAR-10 image-folder tree of PNGs: train/<class>/*.png and test/<class>/*.png."""
    from PIL import Image

    from twinnet.data.cifar import CIFAR10_CLASSES as CLASSES

    root = tmp_path_factory.mktemp("data") / "cifar10"
    rng = np.random.default_rng(1)
    for split, per_class in (("train", 8), ("test", 3)):
        for c, name in enumerate(CLASSES):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                pixels[:, :, c % 3] = 25 * c  # a class-dependent channel
                Image.fromarray(pixels).save(d / f"{i:04d}.png")
    return root.parent


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["torch", "numpy"])
def test_cnn_vgg_quick_runs_the_course_recipe_on_an_image_folder(engine, cifar_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "cnn-vgg", "--quick", "--data-dir", str(cifar_dir), "--out", str(out),
                 "--set", f"engine={engine}"]) == 0
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert (cfg["optimizer"], cfg["lr"], cfg["batch_size"], cfg["model"]) == ("adam", 1e-4, 32, "vgg-reduced")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["params"] == 9_231_114 and summary["steps"] == 4
    assert "image-folder" in summary["data_source"] or "cifar10" in summary["data_source"]
    assert "LOSSY" not in summary["data_source"]  # PNGs are lossless
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [0, 2, 4]
    assert (out / "confusion.png").read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize("name", ["cnn-vgg", "cnn-vgg-best", "cnn-ablation", "cnn-ablation-course",
                                  "cnn-ablation-residual"])
def test_the_course_cnns_checkpoint_within_an_epoch_at_most_every_five_minutes(name):
    """The course recipe's epoch is 1,563 steps of 32 images: a CIFAR-10 CNN run stopped mid-epoch keeps the work
    of its last checkpoint, at most about 5 minutes behind, instead of starting the epoch again."""
    from twinnet.runner import resolve_config

    cfg = resolve_config(name)
    steps_per_epoch = cfg.steps_per_epoch(50_000)
    assert steps_per_epoch >= 390 and 0 < cfg.checkpoint_every < steps_per_epoch
    assert cfg.checkpoint_every_s == 300
    assert resolve_config(name, quick=True).checkpoint_every >= resolve_config(name, quick=True).steps  # only the end
