"""Augmented image batches, validation and early stopping, checkpoints and resume, and every image preset."""

import json

import numpy as np
import pytest

from fake_data import write_mnist
from twinnet.cli import main
from twinnet.data.augment import BatchAugment, normalize
from twinnet.data.images import ImageSource

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---- the batched image pipeline -------------------------------------------------------------------------


def _source(augment=BatchAugment(), n=12):
    x = np.random.default_rng(0).integers(0, 256, (n, 3, 8, 8), dtype=np.uint8)
    return ImageSource(x, np.arange(n) % 3, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), augment)


def test_plain_batches_are_the_normalised_images_in_the_drawn_order():
    src = _source()
    rng, twin = np.random.default_rng(5), np.random.default_rng(5)
    x, y = next(src.batches(5, True, rng))
    idx = twin.permutation(12)[:5]
    np.testing.assert_array_equal(y, src.y[idx])
    np.testing.assert_allclose(x, normalize(src.x[idx], src.mean, src.std), rtol=1e-6)
    assert x.dtype == np.float32


def test_augmented_batches_differ_from_the_stored_images_but_view_does_not():
    src = _source(BatchAugment(crop_pad=2, flip=True))
    batch, _ = next(src.batches(12, False, np.random.default_rng(0)))
    plain, _ = src.view(np.arange(12))
    np.testing.assert_allclose(plain, normalize(src.x, src.mean, src.std), rtol=1e-6)
    assert batch.shape == plain.shape and not np.allclose(batch, plain)
    # flips and crops only move pixels: each augmented image keeps its pixel values within the stored ones
    assert batch.min() >= plain.min() - 1e-5 and batch.max() <= plain.max() + 1e-5


def test_augmented_batches_depend_only_on_the_seed():
    src = _source(BatchAugment(crop_pad=2, flip=True, brightness=0.3, erase_p=0.5))
    a = [b[0] for b, _ in zip(src.batches(4, True, np.random.default_rng(3)), range(5))]
    b = [b[0] for b, _ in zip(src.batches(4, True, np.random.default_rng(3)), range(5))]
    c = [b[0] for b, _ in zip(src.batches(4, True, np.random.default_rng(4)), range(5))]
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not all(np.array_equal(p, q) for p, q in zip(a, c))


def _orientations(src, batches):
    """Per epoch, which stored images each batch showed mirrored (None where seen as stored)."""
    plain = normalize(src.x, src.mean, src.std)
    mirror = plain[..., ::-1]
    seen = []
    for x, _ in batches:
        for img in x:
            same, flipped = np.isclose(plain, img).all(axis=(1, 2, 3)), np.isclose(mirror, img).all(axis=(1, 2, 3))
            assert same.sum() + flipped.sum() == 1  # one stored image, one way round
            seen.append((int(np.argmax(same | flipped)), bool(flipped.any())))
    return seen


def test_alternating_flips_show_each_image_the_other_way_round_in_the_next_epoch():
    n = 40
    x = np.random.default_rng(0).integers(0, 256, (n, 3, 6, 6), dtype=np.uint8)
    src = ImageSource(x, np.arange(n) % 3, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), alternate_flips=7)
    per_epoch = -(-n // 16)  # batches of 16: the last one short
    stream = src.batches(16, True, np.random.default_rng(1))
    epochs = [dict(_orientations(src, [next(stream) for _ in range(per_epoch)])) for _ in range(3)]
    assert all(sorted(e) == list(range(n)) for e in epochs)  # every image once per epoch
    first = epochs[0]
    assert 0 < sum(first.values()) < n  # a coin per image, not all one way
    assert all(epochs[1][i] != first[i] and epochs[2][i] == first[i] for i in range(n))
    assert first == dict(enumerate(src.first_flips().tolist()))
    # another seed, other coins; a stream started in epoch 1 (a resume) mirrors as epoch 1 does
    other = ImageSource(x, src.y, src.mean, src.std, alternate_flips=8).first_flips()
    assert not np.array_equal(other, src.first_flips())
    resumed = src.batches(16, True, np.random.default_rng(1), epoch=1)
    assert dict(_orientations(src, [next(resumed) for _ in range(per_epoch)])) == {i: not f for i, f in first.items()}
    with pytest.raises(ValueError, match="alternate"):
        ImageSource(x, src.y, src.mean, src.std, BatchAugment(flip=True), alternate_flips=0)


def test_image_source_rejects_float_images():
    with pytest.raises(TypeError, match="uint8"):
        ImageSource(np.zeros((2, 3, 4, 4)), np.zeros(2), (0.5,), (0.2,))


# ---- fake data on disk ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Fake MNIST IDX files (a class-dependent bright square over noise) and a fake CIFAR-10 PNG tree."""
    from PIL import Image

    from twinnet.data.cifar import CIFAR10_CLASSES

    root = tmp_path_factory.mktemp("data")
    write_mnist(root / "mnist", 400, 100)
    rng = np.random.default_rng(0)
    for n in (400, 100):  # the draws write_mnist made from the same seed: the tests below know these images
        rng.integers(0, 60, (n, 28, 28))
    for split, per_class in (("train", 12), ("test", 3)):
        for c, name in enumerate(CIFAR10_CLASSES):
            d = root / "cifar10" / split / name
            d.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                pixels[:, :, c % 3] = 25 * c
                Image.fromarray(pixels).save(d / f"{i:04d}.png")
    return root


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TWINNET_CACHE_DIR", str(tmp_path / "cache"))


def _run(name, data_dir, out, *sets, extra=()):
    args = ["run", name, "--data-dir", str(data_dir), "--out", str(out), "--threads", "1", *extra]
    for s in sets:
        args += ["--set", s]
    return main(args)


def _records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# ---- every preset on --quick ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cnn-vgg-best", "mlp-cifar", "mlp-cifar-best", "cnn-mnist"])
def test_image_presets_run_quick(name, data_dir, tmp_path, capsys):
    out = tmp_path / name
    assert _run(name, data_dir, out, "verify=false", extra=["--quick"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert 0 <= summary["test_acc"] <= 1 and summary["steps"] > 0
    assert (out / "curves.png").read_bytes().startswith(PNG_MAGIC)
    assert (out / "checkpoint.pt").exists()
    # the report's time is the training's, its evaluations shown beside it, not counted in it
    training, evaluating = summary["train_time_s"] - summary["eval_time_s"], summary["eval_time_s"]
    assert evaluating > 0 and f"| {training:.1f} s | {evaluating:.1f} s |" in (out / "report.md").read_text()
    if name.startswith("mlp"):  # the MLPs hold a validation split out and report its figures
        assert "val_acc" in summary and all("val_acc" in r for r in _records(out))


@pytest.mark.slow
def test_ablation_quick_writes_one_row_and_one_folder_per_variant(data_dir, tmp_path, capsys):
    out = tmp_path / "ablation"
    assert _run("cnn-ablation", data_dir, out, "variants=course,augment,no-bn", extra=["--quick"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["variant"] for r in summary["variants"]] == ["course", "augment", "no-bn"]
    assert [r["params"] for r in summary["variants"]] == [9_231_114, 9_231_114, 9_225_610]
    augment = json.loads((out / "augment" / "config.json").read_text())["config"]
    course = json.loads((out / "course" / "config.json").read_text())["config"]
    assert (augment["crop_pad"], augment["flip"], course["crop_pad"], course["flip"]) == (4, True, 0, False)
    report = (out / "report.md").read_text()
    assert "| augment | + crop_pad=4, flip=True |" in report
    assert (out / "ablation.png").read_bytes().startswith(PNG_MAGIC)
    # its analysis, read from the rungs' own figures
    accs = {r["variant"]: r["test_acc"] for r in summary["variants"]}
    gain = 100 * (accs["augment"] - accs["course"])
    assert f"augment {gain:+.2f} ({100 * accs['course']:.2f}% to {100 * accs['augment']:.2f}%)" in report
    assert "One change each on adamw, which this ablation did not run" in report  # no-bn changes adamw
    assert f"no-bn {100 * accs['no-bn']:.2f}%" in report
    assert "The course rung, against the figures published for the same work: 84.00%" in report
    assert "--quick run" in report
    assert "Training times are wall-clock seconds where each rung ran (all on " in report
    # every rung a complete run of its own preset, with its own report
    for rung in ("course", "augment", "no-bn"):
        assert json.loads((out / rung / "config.json").read_text())["experiment"] == f"cnn-ablation-{rung}"
        assert "## Final figures" in (out / rung / "report.md").read_text()
        assert f"[{rung}]({rung}/report.md)" in report


def test_ablation_rejects_an_unknown_variant(data_dir, tmp_path, capsys):
    assert _run("cnn-ablation", data_dir, tmp_path / "a", "variants=course,bigger", extra=["--quick"]) == 2
    err = capsys.readouterr().err
    assert "bigger" in err and "augment" in err


# ---- validation split and early stopping ------------------------------------------------------------------


def test_the_reported_test_figures_are_those_of_the_weights_validation_chose(data_dir, tmp_path, capsys):
    out = tmp_path / "best"
    # a learning rate far too large: the model gets worse after its first epochs, so validation picks an early one
    assert _run("mlp-cifar", data_dir, out, "lr=0.5", "epochs=6", "patience=0", "val_split=20", "batch_size=25") == 0
    summary = json.loads((out / "summary.json").read_text())
    by_step = {r["step"]: r for r in _records(out)}
    assert summary["selected_step"] < summary["steps"] and not summary["stopped_early"]
    chosen = by_step[summary["selected_step"]]
    assert summary["val_acc"] == chosen["val_acc"] == max(r["val_acc"] for r in by_step.values())
    assert summary["test_acc"] == chosen["test_acc"] and summary["test_loss"] == pytest.approx(chosen["test_loss"])
    assert summary["test_acc"] != by_step[summary["steps"]]["test_acc"]  # not the last weights'


def test_early_stopping_ends_the_run_and_reports_the_weights_validation_chose(data_dir, tmp_path, capsys):
    out = tmp_path / "es"
    # a learning rate too small to change any prediction: validation accuracy never improves after step 0
    assert _run("mlp-cifar", data_dir, out, "lr=1e-12", "epochs=6", "patience=2", "val_split=20",
                "batch_size=25") == 0
    summary = json.loads((out / "summary.json").read_text())
    per_epoch = (120 - 20) // 25
    assert summary["stopped_early"] and summary["selected_step"] == 0
    assert summary["steps"] == 2 * per_epoch  # two evaluations without improvement, then stop
    assert [r["step"] for r in _records(out)] == [0, per_epoch, 2 * per_epoch]
    report = (out / "report.md").read_text()  # the weights from step 0, the run stopped later
    assert f"at step 0; early stopping ended the run at step {2 * per_epoch:,})" in report


def test_patience_without_a_validation_split_is_a_clear_error(data_dir, tmp_path, capsys):
    assert _run("mlp-cifar", data_dir, tmp_path / "x", "val_split=0", "patience=3", extra=["--quick"]) == 2
    assert "val_split" in capsys.readouterr().err


def test_mixed_precision_in_the_numpy_engine_is_a_clear_error(data_dir, tmp_path, capsys):
    assert _run("cnn-mnist", data_dir, tmp_path / "x", "engine=numpy", "amp=true", extra=["--quick"]) == 2
    err = capsys.readouterr().err
    assert "amp" in err and "torch engine" in err and not (tmp_path / "x").exists()


# ---- checkpoints and resume -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_resume_after_an_interruption_equals_an_unbroken_run(engine, data_dir, tmp_path, monkeypatch, capsys):
    from twinnet.runs import RunDir

    # dropout and augmentation draw random numbers; evaluations every 3 steps fall between the epoch-end
    # checkpoints (4 steps per epoch), so the running train figures and a validation best cross the break
    sets = [f"engine={engine}", "epochs=3", "batch_size=25", "val_split=20", "patience=10", "eval_every=3",
            "eval_unit=step", "amp=false", "lr=0.01"]
    whole = tmp_path / "whole"
    assert _run("mlp-cifar-best", data_dir, whole, *sets) == 0

    append = RunDir.append_metrics

    def append_then_crash(self, record):
        append(self, record)
        if record["step"] == 6:  # after the first checkpoint (step 4) and one evaluation past it
            raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "append_metrics", append_then_crash)
    broken = tmp_path / "broken"
    assert _run("mlp-cifar-best", data_dir, broken, *sets) == 130
    assert f"--resume {broken}" in capsys.readouterr().err
    assert not (broken / "summary.json").exists() and [r["step"] for r in _records(broken)] == [0, 3, 6]
    monkeypatch.setattr(RunDir, "append_metrics", append)
    monkeypatch.delenv("TWINNET_DATA_DIR", raising=False)
    assert main(["run", "mlp-cifar-best", "--resume", str(broken), "--threads", "1"]) == 0  # the data it started with
    assert f"reading data from {data_dir.resolve()}" in capsys.readouterr().err

    a, b = (json.loads((d / "summary.json").read_text()) for d in (whole, broken))
    for key in ("test_acc", "test_loss", "train_loss", "train_acc", "val_acc", "selected_step", "steps",
                "per_class_acc"):
        assert a[key] == b[key], key
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("time_s", "eval_s")} for r in rs]  # noqa: E731
    assert [r["step"] for r in _records(broken)] == [0, 3, 6, 9, 12]  # step 6 once: the resumed run redid it
    assert strip(_records(whole)) == strip(_records(broken))
    pa, pb = np.load(whole / "predictions.npz"), np.load(broken / "predictions.npz")
    np.testing.assert_array_equal(pa["y_pred"], pb["y_pred"])


def test_a_resumed_run_does_not_count_the_time_it_lay_stopped(data_dir, tmp_path, monkeypatch, capsys):
    import time
    import types

    import twinnet.train
    from twinnet.runs import RunDir

    # the loop's clock: 1 s per reading until the interruption, 10^6 s stopped, then 1 ms per reading
    clock = types.SimpleNamespace(now=0.0, tick=1.0)

    def reading():
        clock.now += clock.tick
        return clock.now

    fake = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if not k.startswith("_")})
    fake.perf_counter, fake.time, fake.monotonic = reading, lambda: 1.7e9 + clock.now, reading
    monkeypatch.setattr(twinnet.train, "time", fake)
    append = RunDir.append_metrics

    def append_then_crash(self, record):
        append(self, record)
        if record["step"] == 6:  # after the checkpoint of step 4
            raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "append_metrics", append_then_crash)
    out = tmp_path / "run"
    sets = ("engine=numpy", "epochs=3", "batch_size=25", "val_split=20", "eval_every=3", "eval_unit=step")
    assert _run("mlp-cifar", data_dir, out, *sets) == 130
    at_step_3 = {r["step"]: r["time_s"] for r in _records(out)}[3]
    monkeypatch.setattr(RunDir, "append_metrics", append)
    clock.now, clock.tick = clock.now + 1e6, 1e-3
    assert main(["run", "mlp-cifar", "--resume", str(out), "--threads", "1"]) == 0
    times = [r["time_s"] for r in _records(out)]
    assert times == sorted(times)
    assert at_step_3 < times[-1] < at_step_3 + 1e3  # the time up to the checkpoint counted, the stop not
    assert json.loads((out / "summary.json").read_text())["train_time_s"] == pytest.approx(times[-1])


def test_resume_refuses_changed_settings(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run("mlp-cifar", data_dir, out, extra=["--quick"]) == 0
    (out / "summary.json").unlink()
    assert main(["run", "mlp-cifar", "--resume", str(out), "--data-dir", str(data_dir), "--set", "batch_size=7"]) == 2
    err = capsys.readouterr().err
    assert "batch_size" in err and "new run" in err


@pytest.mark.slow
def test_an_interrupted_ablation_keeps_its_finished_variants(data_dir, tmp_path, monkeypatch, capsys):
    import dataclasses

    from twinnet.registry import EXPERIMENTS, get_experiment

    rung = get_experiment("cnn-ablation-augment")

    def interrupted(cfg, run_dir, ctx):
        raise KeyboardInterrupt  # the second rung is interrupted

    monkeypatch.setitem(EXPERIMENTS, rung.name, dataclasses.replace(rung, run=interrupted))
    out = tmp_path / "ablation"
    assert _run("cnn-ablation", data_dir, out, "variants=course,augment", extra=["--quick"]) == 130
    assert (out / "course" / "summary.json").exists() and (out / "course" / "report.md").exists()
    finished = {p.name: p.stat().st_mtime_ns for p in (out / "course").iterdir()}
    monkeypatch.setitem(EXPERIMENTS, rung.name, rung)
    assert main(["run", "cnn-ablation", "--resume", str(out), "--data-dir", str(data_dir), "--threads", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["variant"] for r in summary["variants"]] == ["course", "augment"]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "course").iterdir()} == finished  # not trained again
    assert (out / "augment" / "report.md").exists()
    # a resume that names fewer rungs drops none of the finished ones from the folder's summary
    capsys.readouterr()
    assert main(["run", "cnn-ablation", "--resume", str(out), "--data-dir", str(data_dir), "--threads", "1",
                 "--set", "variants=augment"]) == 0
    assert "the folder's variants stay course,augment (a resume adds runs" in capsys.readouterr().err
    assert [r["variant"] for r in json.loads((out / "summary.json").read_text())["variants"]] == ["course", "augment"]


def test_a_corrupt_checkpoint_is_one_clear_line(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run("mlp-cifar", data_dir, out, extra=["--quick"]) == 0
    (out / "summary.json").unlink()
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert main(["run", "mlp-cifar", "--resume", str(out), "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint.pt" in err[0] and "new run" in err[0]


def test_a_batch_whose_activations_cannot_fit_in_memory_is_refused_before_training(data_dir, tmp_path, capsys,
                                                                                   monkeypatch):
    """Linux lets a process allocate more than the machine has and then kills it without a word: a batch whose
    activations alone (a lower estimate) exceed the memory is refused in one line, and no run is left behind."""
    from twinnet import hardware

    # mnist-cnn keeps about 0.48 MiB of activations per 28x28 image; 100 images are about 48 MiB
    monkeypatch.setattr(hardware, "memory_bytes", lambda: 40 * 2**20)
    assert _run("mnist-numpy", data_dir, tmp_path / "big", "batch_size=100", "epochs=1", "train_subset=0",
                "verify=false") == 2
    err = capsys.readouterr().err
    assert "batch_size=100 (its activations, 0.4" in err and "MiB per image) needs at least" in err
    assert "make it smaller" in err and "Traceback" not in err and not (tmp_path / "big").exists()
    assert _run("mnist-numpy", data_dir, tmp_path / "small", "batch_size=50", "epochs=1", "train_subset=0",
                "verify=false") == 0  # 24 MiB of 40: trains
