"""A battery of bad inputs and faults: data, settings, run folders, checkpoints, disks, signals, concurrency.

Every case asserts the exit status, one line on stderr naming the problem (no traceback), and that
every file present before (data, earlier runs) is byte for byte as it was, with nothing added.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from fake_data import write_cifar_tree, write_mnist
from twinnet import TwinnetError
from twinnet.cli import main

# ---- data and runs the cases start from -------------------------------------------------------------------


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    """Data and runs built once; each case copies what it needs into its own folder."""
    root = tmp_path_factory.mktemp("templates")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TWINNET_CACHE_DIR", str(root / "cache"))
        write_mnist(root / "data" / "mnist")
        write_cifar_tree(root / "data" / "cifar10")
        write_cifar_tree(root / "other-data" / "cifar10", seed=7)  # same shapes, other pixels
        finished = root / "finished-run"
        assert main(["run", "mlp-cifar", "--quick", "--data-dir", str(root / "data"), "--out", str(finished),
                     "--threads", "1"]) == 0
        shutil.copytree(finished, root / "image-run")  # as if interrupted after its last checkpoint
        (root / "image-run" / "summary.json").unlink()
        assert main(["run", "palindrome-sweep", "--quick", "--out", str(root / "sweep-run"), "--set", "models=rnn",
                     "--set", "lengths=3", "--set", "n_seeds=1", "--set", "steps=4"]) == 0
    return root


@dataclass
class World:
    """One case's folder: the data, the runs, and what the case may patch."""

    root: Path
    templates: Path
    monkeypatch: pytest.MonkeyPatch
    marker: Path | None = None  # a file a malicious checkpoint would create
    held: int | None = None  # a file descriptor holding a run directory's lock

    @property
    def data(self) -> Path:
        if not (self.root / "data").exists():
            shutil.copytree(self.templates / "data", self.root / "data")
        return self.root / "data"

    def run(self, name: str = "image-run") -> Path:
        """A copy of a template run, to resume or report on."""
        dest = self.root / "runs" / name
        if not dest.exists():
            shutil.copytree(self.templates / name, dest)
        return dest

    def out(self) -> str:
        return str(self.root / "runs" / "new")


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file's bytes, mode and modification time, and every folder, under ``root``: a file rewritten
    with the same bytes, or a folder made or removed, shows too."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else "folder", p.stat().st_mode,
                                       p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


# ---- the cases ----------------------------------------------------------------------------------------------


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


class _Opens:
    """A pickle that opens (creates) a file when unpickled: the harm a malicious checkpoint could do."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def _malicious_checkpoint(w: World) -> list[str]:
    import torch

    run = w.run()
    w.marker = w.root.parent / f"{w.root.name}-pwned"
    torch.save({"config": {}, "loop": _Opens(str(w.marker))}, run / "checkpoint.pt")
    (run / "checkpoint.pt.sha256").write_text(hashlib.sha256((run / "checkpoint.pt").read_bytes()).hexdigest() + "\n")
    return ["run", "mlp-cifar", "--resume", str(run), "--data-dir", str(w.data)]


def _disk_full(w: World) -> list[str]:
    import twinnet.runs

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    w.monkeypatch.setattr(twinnet.runs.os, "fsync", no_space)
    return ["run", "mlp-compare", "--quick", "--out", w.out()]


def _dangling_out(w: World) -> list[str]:
    link = w.root.parent / "dangling"  # beside the world, whose snapshot follows links
    link.symlink_to(w.root.parent / "gone")
    return ["run", "mlp-compare", "--quick", "--out", str(link)]


def _read_only_out(w: World) -> list[str]:
    import twinnet.runs

    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), kwargs.get("dir"))

    w.monkeypatch.setattr(twinnet.runs.tempfile, "mkstemp", refused)
    (w.root / "runs" / "new").mkdir(parents=True)
    return ["run", "mlp-compare", "--quick", "--out", w.out()]


def _report_read_only(w: World) -> list[str]:
    """A report in a folder that cannot be written: each new file refused (EACCES), and the folder's time not
    settable either (EPERM), which failed while figures were being restored and hid the first error."""
    import twinnet.runs

    run = w.run("finished-run")
    for figure in run.glob("*.png"):
        figure.unlink()  # to be drawn again, into the folder that refuses it

    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), kwargs.get("dir"))

    def not_permitted(*args, **kwargs):
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))

    w.monkeypatch.setattr(twinnet.runs.tempfile, "mkstemp", refused)
    w.monkeypatch.setattr(os, "utime", not_permitted)
    return ["report", str(run)]


def _held_lock(w: World) -> list[str]:
    import fcntl

    run = w.run()
    fd = os.open(run, os.O_RDONLY)  # as a first `--resume` of the run would hold it
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    w.held = fd
    return ["run", "mlp-cifar", "--resume", str(run), "--data-dir", str(w.data)]


def _damaged(name: str, content: bytes, make: Callable[[World], Path] = lambda w: w.run()):
    def setup(w: World) -> list[str]:
        run = make(w)
        (run / name).write_bytes(content)
        return ["run", "mlp-cifar", "--resume", str(run), "--data-dir", str(w.data)]
    return setup


def _sweep_result(line: dict):
    def setup(w: World) -> list[str]:
        run = w.run("sweep-run")
        victim = w.root / "victim" / "x-T3-seed0.pt"  # what a path in a damaged result could reach
        victim.parent.mkdir()
        victim.write_bytes(b"keep me")
        with open(run / "results.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
        return ["run", "palindrome-sweep", "--resume", str(run)]
    return setup


def _report_of(change: Callable[[Path], None]):
    def setup(w: World) -> list[str]:
        run = w.run("finished-run")
        change(run)
        return ["report", str(run)]
    return setup


def _object_npz(run: Path) -> None:
    np.savez(run / "predictions.npz", y_true=np.array([object()], dtype=object))


def _word_in_metrics(run: Path) -> None:
    """An edit that left a word where a figure's number was: drawn as a category, without a word, before."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) >= 2 and all(isinstance(r.get("test_acc"), float) for r in records[:2]), records
    records[1]["test_acc"] = "high"
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def _cut_metrics_middle(run: Path) -> None:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[1] = lines[1][: len(lines[1]) // 2]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def _mnist_damaged(name: str, change: Callable[[bytes], bytes]):
    def setup(w: World) -> list[str]:
        path = w.data / "mnist" / name
        path.write_bytes(change(path.read_bytes()))
        return ["run", "mnist-numpy", "--quick", "--data-dir", str(w.data), "--set", "verify=false", "--out", w.out()]
    return setup


def _cifar_changed(change: Callable[[Path], None]):
    def setup(w: World) -> list[str]:
        change(w.data / "cifar10")
        return ["run", "cnn-vgg", "--quick", "--data-dir", str(w.data), "--out", w.out()]
    return setup


def _image(size=(32, 32), payload: bytes | None = None):
    def change(tree: Path) -> None:
        from PIL import Image

        target = tree / "train" / "cat" / "0003.png"
        if payload is not None:
            target.write_bytes(payload)
        else:
            Image.fromarray(np.zeros((*size, 3), np.uint8)).save(target)
    return change


def _run(name: str, *sets: str, data: bool = True, extra: tuple[str, ...] = ()):
    def setup(w: World) -> list[str]:
        args = ["run", name, *extra]
        if data:
            args += ["--data-dir", str(w.data)]
        for s in sets:
            args += ["--set", s]
        return [*args, "--out", w.out()]
    return setup


def _resume(*extra: str, run: str = "image-run", experiment: str = "mlp-cifar"):
    def setup(w: World) -> list[str]:
        return ["run", experiment, "--resume", str(w.run(run)), "--data-dir", str(w.data), *extra]
    return setup


@dataclass(frozen=True)
class Case:
    name: str
    setup: Callable[[World], list[str]]
    message: str  # a part of the one line the user must see
    code: int = 2


def _cifar_data_dir_text_file(w: World) -> list[str]:
    notes = w.root / "notes.txt"
    notes.write_text("where the data is: ask the teacher\n")
    return ["run", "cnn-vgg", "--quick", "--data-dir", str(notes), "--out", w.out()]


def _constant_mnist(w: World) -> list[str]:
    from fake_data import idx

    d = w.root / "constant" / "mnist"
    write_mnist(d)
    n = 300
    (d / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx(np.zeros((n, 28, 28), np.uint8))))
    return ["run", "mnist-numpy", "--quick", "--set", "verify=false", "--data-dir", str(d.parent), "--out", w.out()]


def _torch_out_of_memory(w: World) -> list[str]:
    import twinnet.experiments.mlp_compare as mc

    def alloc(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 400000000000 bytes")

    w.monkeypatch.setattr(mc, "make_toy", alloc)
    return ["run", "mlp-compare", "--quick", "--out", w.out()]


def _numpy_too_big(w: World) -> list[str]:
    import twinnet.experiments.mlp_compare as mc

    def alloc(*args, **kwargs):
        raise ValueError("Maximum allowed size exceeded")  # NumPy's word for an array beyond any address space

    w.monkeypatch.setattr(mc, "make_toy", alloc)
    return ["run", "mlp-compare", "--quick", "--out", w.out()]


CASES = [
    # data
    Case("torch-out-of-memory", _torch_out_of_memory, "out of memory: a setting asks for more than"),
    Case("numpy-too-big", _numpy_too_big, "out of memory: a setting asks for more than"),
    # each allocation would fit, their sum would not: Linux would kill the run without a word, so it is refused first
    Case("mlp-wider-than-memory", _run("mlp-compare", "hidden=[99999999]", data=False, extra=("--quick",)),
         "hidden=[99999999] needs at least"),
    Case("boundary-grid-larger-than-memory", _run("mlp-compare", "grid=100000", data=False, extra=("--quick",)),
         "grid=100000 (a decision boundary of grid x grid points) needs at least"),
    Case("rnn-wider-than-memory", _run("palindrome", "hidden=100000", data=False, extra=("--quick",)),
         "hidden=100000 needs at least"),
    # a length's inputs and hidden states through time: one batch's, and the evaluation set's
    Case("rnn-longer-than-memory", _run("palindrome", "length=1000000000", data=False, extra=("--quick",)),
         "length=1000000000 (with batch_size="),
    Case("rnn-final-set-larger-than-memory", _run("palindrome", "final_size=1000000000", data=False,
                                                  extra=("--quick",)), "final_size=1000000000) needs at least"),
    Case("sweep-longer-than-memory", _run("palindrome-sweep", "lengths=[5,1000000000]", data=False, extra=("--quick",)),
         "length=1000000000 (with batch_size="),
    Case("gradients-longer-than-memory", _run("rnn-gradients", "lengths=[1000000000]", data=False, extra=("--quick",)),
         "length=1000000000 (with batch_size="),
    Case("integer-beyond-64-bits", lambda w: ["run", "mlp-compare", "--quick", "--set", "n_samples=99999999999999999999",
                                             "--out", w.out()], "expected an integer from -2**63 to 2**63 - 1"),
    Case("constant-images", _constant_mnist, "the training images are constant in channel(s) 0"),
    Case("toy-split-too-small", lambda w: ["run", "mlp-compare", "--quick", "--set", "n_samples=10", "--out", w.out()],
         "fewer than its 3 classes on one side"),
    Case("cifar-time-no-presets", lambda w: ["run", "cifar-time", "--quick", "--set", "presets=", "--out", w.out()],
         "presets is empty"),
    Case("cifar-time-fractional-seed",
         lambda w: ["run", "cifar-time", "--quick", "--set", "seeds=1.5", "--out", w.out()],
         "seeds: expected comma-separated whole numbers, got '1.5'"),
    Case("cifar-time-seed-past-the-last", lambda w: ["run", "cifar-time", "--quick", "--set", "seeds=0,4294967296",
                                                     "--out", w.out()], "seeds must be whole numbers in [0, 2**32)"),
    Case("cifar-time-budgets-of-the-same-steps",  # a quick airbench94 has 4 steps: both budgets give it 1
         lambda w: ["run", "cifar-time", "--quick", "--set", "budgets=0.001,0.002", "--out", w.out()],
         "budgets 0.001 and 0.002 both give airbench94 1 step(s) of its 4"),
    Case("palindrome-sweep-seeds-past-the-last",
         lambda w: ["run", "palindrome-sweep", "--quick", "--seed", "4294967295", "--set", "n_seeds=2", "--out",
                    w.out()], "4294967295 + 2 - 1 is past the last seed"),
    Case("reproduce-full-seeds-past-the-last",  # --full adds runs at --seed + 1 and + 2
         lambda w: ["reproduce", "--full", "--parts", "cnn", "--seed", "4294967294", "--data-dir", str(w.data),
                    "--out", w.out()], "seed must be an integer in [0, 2**32), got 4294967296"),
    Case("batch-norm-on-one-image", lambda w: ["run", "mlp-cifar-best", "--quick", "--data-dir", str(w.data),
                                               "--set", "batching=sample", "--out", w.out()],
         "has batch norm over one value per channel, which a batch of one image cannot train"),
    Case("batch-norm-last-batch-of-one",  # the quick run's 56 training images
         lambda w: ["run", "mlp-cifar-best", "--quick", "--data-dir", str(w.data), "--set", "batch_size=55", "--out",
                    w.out()], "batch_size=55 leaves a last batch of 1 of the 56 training images; choose a batch_size "
                              "that does not, e.g. 54"),
    Case("out-with-runs-dir", lambda w: ["run", "mlp-compare", "--quick", "--out", w.out(), "--runs-dir",
                                         str(w.root / "elsewhere")], "drop one of them"),
    Case("resume-a-finished-run", lambda w: ["run", "mlp-cifar", "--resume", str(w.run("finished-run")),
                                             "--data-dir", str(w.data)], "this run has finished"),
    Case("resume-with-seed", lambda w: ["run", "mlp-cifar", "--resume", str(w.run()), "--seed", "3"],
         "drop --out, --quick and --seed"),
    Case("show-config-of-a-resume-with-seed", lambda w: ["run", "mlp-cifar", "--resume", str(w.run()), "--seed", "3",
                                                         "--show-config"], "drop --out, --quick and --seed"),
    Case("threads-absurd", lambda w: ["run", "mlp-compare", "--quick", "--threads", "100000", "--out", w.out()],
         "--threads 100000 is more than 8x this machine's"),
    Case("no-such-data-dir", lambda w: ["run", "mnist-numpy", "--quick", "--data-dir", str(w.root / "nowhere"),
                                        "--out", w.out()], "does not exist; give --data-dir the folder holding mnist/"),
    Case("data-dir-is-a-file", lambda w: ["run", "mnist-numpy", "--quick", "--data-dir",
                                          str(w.data / "mnist" / "t10k-labels-idx1-ubyte.gz"), "--out", w.out()],
         "is a file; MNIST is read from the folder holding its four files"),
    Case("cifar-data-dir-is-a-text-file", _cifar_data_dir_text_file,
         "notes.txt is a file, and no archive (.tar.gz, .tgz, .tar or .zip)"),
    Case("no-mnist-files", lambda w: ["run", "mnist-numpy", "--quick", "--data-dir", str(w.data / "cifar10"),
                                      "--out", w.out()], "train-images-idx3-ubyte"),
    Case("mnist-checksum", _run("mnist-numpy", extra=("--quick",)), "--set verify=false"),
    Case("mnist-truncated", _mnist_damaged("train-images-idx3-ubyte.gz",
                                           lambda b: gzip.compress(gzip.decompress(b)[:5000])), "train-images"),
    Case("mnist-not-gzip", _mnist_damaged("train-labels-idx1-ubyte.gz", lambda b: b"garbage" * 10), "train-labels"),
    Case("mnist-wrong-magic", _mnist_damaged("t10k-labels-idx1-ubyte.gz",
                                             lambda b: gzip.compress(b"\0\0\x08\x03" + gzip.decompress(b)[4:])),
         "t10k-labels"),
    Case("cifar-undecodable-image", _cifar_changed(_image(payload=b"\x89PNG not really")), "0003.png"),
    Case("cifar-wrong-size-image", _cifar_changed(_image(size=(30, 32))), "0003.png"),
    Case("cifar-missing-class", _cifar_changed(lambda t: shutil.rmtree(t / "test" / "frog")), "frog"),
    Case("cifar-stray-class", _cifar_changed(lambda t: shutil.copytree(t / "train" / "cat", t / "train" / "unicorn")),
         "unicorn"),
    # settings
    Case("unknown-experiment", lambda w: ["run", "mnist-numpi", "--out", w.out()], "did you mean 'mnist-numpy'"),
    Case("unknown-key", _run("mnist-numpy", "learning_rate=0.1", data=False), "--set learning_rate: unknown key"),
    Case("no-equals", _run("mnist-numpy", "lr", data=False), "expected key=value"),
    Case("bad-number", _run("mnist-numpy", "lr=fast", data=False), "expected a number"),
    Case("negative-lr", _run("mnist-numpy", "lr=-1", data=False), "lr must be > 0"),
    Case("nan-lr", _run("mnist-numpy", "lr=nan", data=False), "expected a finite number"),
    Case("infinite-momentum", _run("mlp-compare", "momentum=inf", data=False), "expected a finite number"),
    Case("toy-test-fraction", _run("mlp-compare", "test_fraction=1.5", data=False), "test_fraction must be between"),
    Case("toy-noise", _run("mlp-compare", "noise=-1", data=False), "noise must be between 0 and 1e6"),
    # far beyond the sets' span: blobs' 10x std overflowed to inf inside scikit-learn, an "unexpected" error
    Case("toy-noise-huge", _run("mlp-compare", "noise=1e308", data=False), "noise must be between 0 and 1e6"),
    Case("sweep-seeds-beyond-the-cap", _run("palindrome-sweep", "n_seeds=100000000", data=False, extra=("--quick",)),
         "n_seeds must be at most 1000"),
    Case("zero-batch", _run("mnist-numpy", "batch_size=0", data=False), "batch_size"),
    Case("unknown-model", _run("mnist-numpy", "model=resnet-9000", data=False), "unknown model 'resnet-9000'"),
    Case("unknown-engine", _run("mnist-numpy", "engine=jax", data=False), "engine"),
    Case("bad-amp", _run("cnn-vgg", "amp=maybe", data=False), "amp"),
    Case("negative-seed", _run("mnist-numpy", data=False, extra=("--seed", "-1")), "--seed"),
    Case("negative-seed-set", _run("mnist-numpy", "seed=-3", data=False), "seed"),
    Case("one-seed", _run("mlp-compare", data=False, extra=("--seeds", "5")), "at least two distinct seeds"),
    Case("seeds-not-numbers", _run("mlp-compare", data=False, extra=("--seeds", "a,b")), "--seeds 'a,b'"),
    Case("empty-seeds-show-config", _run("mlp-compare", data=False, extra=("--seeds", "", "--show-config")),
         "at least two distinct seeds"),
    Case("seeds-and-set-seed", _run("mlp-compare", "seed=3", data=False, extra=("--seeds", "0,1")),
         "--set seed=... would change nothing"),
    Case("cifar-time-unknown-preset", _run("cifar-time", "presets=airbench94,nosuch", data=False),
         "presets=airbench94,nosuch: unknown experiment 'nosuch'"),
    Case("engine-compare-unknown-preset", _run("engine-compare", "preset=cnn-vgx", data=False),
         "preset=cnn-vgx: unknown experiment 'cnn-vgx' (did you mean 'cnn-vgg'?)"),
    Case("seed-and-set-seed", _run("mlp-compare", "seed=3", data=False, extra=("--seed", "1")),
         "--seed and --set seed=... both set the seed"),  # one of them would be dropped without a word
    Case("check-convention-and-spec", lambda w: ["check", str(w.root / "layers.py"), "--convention", "cs231n",
                                                 "--spec", str(w.root / "spec.toml")], "--spec SPEC.toml, not both"),
    Case("zero-threads", _run("mnist-numpy", data=False, extra=("--threads", "0")), "--threads must be >= 1"),
    Case("negative-subset", _run("mnist-numpy", "train_subset=-1", data=False), "train_subset"),
    Case("warmup-past-steps", _run("cnn-vgg", "schedule=warmup_cosine", "steps=10", "warmup_steps=20", data=False),
         "warmup_steps=20"),
    Case("warmup-past-epochs", _run("mnist-numpy", "schedule=warmup_cosine", "warmup_steps=500", "verify=false",
                                    extra=("--quick",)), "warmup_steps=500"),
    Case("crop-too-large", _run("cnn-vgg", "crop_pad=40", data=False), "crop_pad=40"),
    Case("val-split-too-large", _run("mlp-cifar", "val_split=500", extra=("--quick",)), "val_split=500"),
    Case("patience-without-val", _run("mlp-cifar", "val_split=0", "patience=3", data=False), "val_split"),
    Case("amp-in-numpy", _run("cnn-mnist", "engine=numpy", "amp=true", data=False), "torch engine"),
    Case("ablation-fixed-lr", _run("cnn-ablation", "lr=0.5", data=False), "cnn-ablation sets lr in every rung"),
    Case("palindrome-length", _run("palindrome", "length=1", data=False), "length must be >= 2"),
    Case("palindrome-momentum", _run("palindrome", "momentum=5", data=False), "momentum must be in [0, 1)"),
    Case("mlp-compare-momentum-1", _run("mlp-compare", "momentum=1", data=False), "momentum must be in [0, 1)"),
    Case("sweep-models", _run("palindrome-sweep", "models=rnn,transformer", data=False), "models"),
    # run folders
    Case("out-not-empty", lambda w: ["run", "mlp-compare", "--quick", "--out", str(w.run())], "already exists"),
    Case("out-under-a-file", lambda w: ["run", "mlp-compare", "--quick", "--out",
                                        str(w.data / "mnist" / "t10k-labels-idx1-ubyte.gz" / "run")],
         "give --out (or --runs-dir) a folder you can write to"),
    Case("out-read-only", _read_only_out, "Permission denied"),
    Case("out-dangling-link", _dangling_out, "dangling is a symbolic link to "),
    Case("out-with-a-newline", lambda w: ["run", "mlp-compare", "--quick", "--out", w.out() + "\nlast"],
         "holds a newline or another control character; choose a name without one"),
    Case("out-with-a-line-separator", lambda w: ["run", "mlp-compare", "--quick", "--out", w.out() + "\u2028last"],
         "holds a newline or another control character"),
    Case("report-read-only", _report_read_only, "Permission denied ("),
    Case("disk-full", _disk_full, "runs/new: No space left on device"),  # the run folder, then the cause
    Case("resume-no-such-dir", lambda w: ["run", "mlp-cifar", "--resume", str(w.root / "nowhere")], "no such directory"),
    Case("resume-not-a-run", lambda w: ["run", "mlp-cifar", "--resume", str(w.data)], "no config.json there"),
    Case("resume-other-experiment", _resume(experiment="cnn-vgg"), "that is a run of 'mlp-cifar'"),
    Case("resume-not-resumable", _resume(experiment="mlp-compare"), "cannot be resumed"),
    Case("resume-with-out", _resume("--out", "/tmp/x"), "drop --out"),
    Case("resume-changed-lr", _resume("--set", "lr=0.5"), "cannot change lr"),
    Case("resume-sweep-changed-lr", _resume("--set", "lr=0.05", run="sweep-run", experiment="palindrome-sweep"),
         "cannot change lr"),
    Case("resume-broken-config", _damaged("config.json", b'{"experiment": "mlp-cifar", "config": {"lr": '),
         "config.json is damaged"),
    Case("resume-config-not-a-dict", _damaged("config.json", b'["mlp-cifar"]'), "config.json is damaged"),
    Case("resume-config-bad-value", _damaged("config.json", b'{"experiment": "mlp-cifar", "config": {"lr": -2}}'),
         "lr must be > 0"),
    Case("resume-config-wrong-type", _damaged("config.json", b'{"experiment": "mlp-cifar", "config": {"lr": "abc"}}'),
         "lr='abc' (expected float); restore the file as the run wrote it, or start a new run"),
    Case("resume-garbage-checkpoint", _damaged("checkpoint.pt", b"not a checkpoint"), "does not match its digest"),
    Case("resume-checkpoint-without-digest", _damaged("checkpoint.pt", b"not a checkpoint", make=lambda w: (
        (w.run() / "checkpoint.pt.sha256").unlink(), w.run())[1]), "no checkpoint.pt.sha256 beside it"),
    Case("resume-garbage-with-its-digest", lambda w: (
        (w.run() / "checkpoint.pt").write_bytes(b"not a checkpoint"),
        (w.run() / "checkpoint.pt.sha256").write_text(hashlib.sha256(b"not a checkpoint").hexdigest()),
        _resume()(w))[2], "damaged or not a checkpoint"),
    Case("resume-flipped-byte", lambda w: (_flip_one_byte(w.run() / "checkpoint.pt"),
                                           _resume()(w))[1], "does not match its digest"),
    Case("resume-malicious-pickle", _malicious_checkpoint, "holds more than plain data"),
    Case("resume-other-data", lambda w: ["run", "mlp-cifar", "--resume", str(w.run()), "--data-dir",
                                         str(w.templates / "other-data")], "not the data this run trained on"),
    Case("resume-locked", _held_lock, "another process is running in"),
    Case("resume-sweep-result-escapes", _sweep_result({"job": "../../victim/x", "model": "rnn", "length": 3, "seed": 0,
                                                       "summary": {"test_acc": 1.0, "outcome": "completed"}}),
         "result 2 is damaged"),
    Case("resume-sweep-result-wrong-types", _sweep_result({"job": ["rnn"], "length": 3, "seed": 5, "summary": "x"}),
         "result 2 is damaged"),
    Case("resume-sweep-result-lacks-figures", _sweep_result({"job": "runs/rnn-T3-seed0", "summary": {"test_acc": "x"}}),
         "damaged"),
    Case("newline-in-a-setting", _run("mlp-compare", "lr=0.1\n2", data=False), "lr=0.1\\n2"),
    Case("absurdly-nested-config", _damaged("config.json", b"[" * 100_000), "config.json is damaged"),
    Case("report-not-a-run", lambda w: ["report", str(w.data)], "not a finished run"),
    Case("report-a-file", lambda w: ["report", str(w.run("finished-run") / "config.json")],
         "is a file, not a run directory"),
    Case("resume-config-names-no-experiment", _damaged("config.json", b'{"config": {"lr": 0.1}}'),
         "config.json is damaged (it names no experiment)"),
    Case("resume-config-quick-not-a-bool", _damaged("config.json", b'{"experiment": "mlp-cifar", "quick": "yes", '
                                                                    b'"config": {"lr": 0.1}}'), "quick is 'yes'"),
    Case("resume-with-runs-dir", lambda w: ["run", "mlp-cifar", "--resume", str(w.run()), "--runs-dir",
                                            str(w.root / "elsewhere")], "drop --runs-dir"),
    Case("resume-with-seeds", lambda w: ["run", "mlp-cifar", "--resume", str(w.run()), "--seeds", "0,1"],
         "at its own seed: drop --seeds (for more seeds, start a group in a new folder"),
    Case("report-no-such-dir", lambda w: ["report", str(w.root / "nowhere")], "no such run directory"),
    Case("report-broken-summary", _report_of(lambda r: (r / "summary.json").write_text("{")), "summary.json is damaged"),
    Case("report-damaged-metrics-line", _report_of(_cut_metrics_middle), "line 2 is damaged"),
    # drawn from nothing, the figures would be replaced by empty axes
    Case("reproduce-part-twice", lambda w: ["reproduce", "--quick", "--parts", "engine,engine", "--out", w.out()],
         "parts lists engine more than once"),
    Case("report-word-for-a-number-in-metrics", _report_of(_word_in_metrics),
         'record 2 holds test_acc = "high", where the other records hold numbers'),
    Case("report-emptied-metrics", _report_of(lambda r: (r / "metrics.jsonl").write_text("")),
         "metrics.jsonl is empty, but this run finished"),
    Case("report-deleted-metrics", _report_of(lambda r: (r / "metrics.jsonl").unlink()),
         "metrics.jsonl is missing, but this run finished"),
    Case("report-pickled-npz", _report_of(_object_npz), "cannot be read safely"),
    Case("report-text-as-npz", _report_of(lambda r: (r / "predictions.npz").write_text("y_true,y_pred\n1,2\n")),
         "not a zip archive's, so it is no .npz"),
    Case("report-predictions-lack-classes", _report_of(lambda r: np.savez(  # figures drawn, then the report fails
        r / "predictions.npz", y_true=np.zeros(4, np.int64), y_pred=np.zeros(4, np.int64))), "lack what the"),
    Case("report-summary-null", _report_of(lambda r: (r / "summary.json").write_text("null")),
         "summary.json is damaged: it holds null, not the run's figures (a JSON object)"),
    Case("report-summary-lacks-figures", _report_of(lambda r: (r / "summary.json").write_text('{"model": "x"}')),
         "incomplete or damaged"),
    Case("report-unknown-experiment", _report_of(lambda r: (r / "config.json").write_text(
        json.dumps({"experiment": "gpt-5", "config": {}}))), "unknown experiment 'gpt-5'"),
]


@pytest.fixture
def world(tmp_path, templates, monkeypatch):
    monkeypatch.setenv("TWINNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TWINNET_DATA_DIR", raising=False)
    root = tmp_path / "world"
    root.mkdir()
    w = World(root, templates, monkeypatch)
    yield w
    if w.held is not None:
        os.close(w.held)


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(case, world, capsys):
    argv = case.setup(world)
    before = snapshot(world.root)
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == case.code, err
    assert len(lines) == 1 and lines[0].startswith("twinnet: error:"), err
    assert case.message in lines[0] and "Traceback" not in err
    assert snapshot(world.root) == before  # every file as it was, none added, none half-written
    assert world.marker is None or not world.marker.exists()  # the pickle ran nothing


# ---- faults that leave something on purpose ----------------------------------------------------------------


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_a_nan_loss_stops_an_image_run_with_one_line_and_a_diverged_summary(engine, world, capsys, monkeypatch):
    from twinnet import learner

    cls = learner.NumpyLearner if engine == "numpy" else learner.TorchLearner
    real_step, calls = cls.train_step, []

    def nan_at_step_5(self, x, y):  # 100 images, batch 25: 4 steps an epoch, so step 5 is in the second epoch
        calls.append(1)
        loss, correct = real_step(self, x, y)
        return (float("nan") if len(calls) == 5 else loss), correct

    monkeypatch.setattr(cls, "train_step", nan_at_step_5)
    out = world.root / "runs" / "nan"
    code = main(["run", "mlp-cifar", "--data-dir", str(world.data), "--out", str(out), "--threads", "1",
                 "--set", f"engine={engine}", "--set", "epochs=4", "--set", "val_split=20", "--set", "batch_size=25"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("twinnet: error:"), err
    assert "training loss became nan at step 5" in err[0] and "checkpoint (step 4) is kept" in err[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["outcome"] == "diverged" and summary["diverged_at_step"] == 5
    assert summary["last_checkpoint_step"] == 4
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 4]  # nothing measured after the bad step
    from twinnet.checkpoint import read

    assert read(out / "checkpoint.pt")["loop"]["step"] == 4  # the last good checkpoint, intact
    assert "diverged at step 5" in (out / "report.md").read_text().replace("became NaN or infinite at step", "diverged at step")


def test_a_nan_loss_in_mlp_compare_is_one_line_and_a_diverged_summary(world, capsys, monkeypatch):
    from twinnet import learner

    real_step, calls = learner.TorchLearner.train_step, []

    def nan_at_step_3(self, x, y):
        calls.append(1)
        loss, correct = real_step(self, x, y)
        return (float("inf") if len(calls) == 3 else loss), correct

    monkeypatch.setattr(learner.TorchLearner, "train_step", nan_at_step_3)
    out = world.root / "runs" / "toy"
    assert main(["run", "mlp-compare", "--quick", "--set", "datasets=moons", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "moons, torch engine: the training loss became inf at step 3" in err[0]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["outcome"], summary["diverged_at_step"], summary["engine"]) == ("diverged", 3, "torch")
    assert [r["engine"] for r in summary["results"]] == ["numpy"]  # the engine that finished


def test_a_non_finite_evaluation_loss_stops_training():
    from twinnet.data.arrays import ArrayDataset
    from twinnet.train import Diverged, TrainConfig, fit

    class Learner:  # trains fine, but its predictions on the test set are not finite
        engine, lr = "numpy", 0.1

        def scale_lr(self, factor): ...

        def train_step(self, x, y):
            return 0.5, 0

        def predict(self, x, batch_size=1024):
            return np.full((len(x), 2), np.nan)

        def loss_of(self, logits, y):
            return float(np.mean(logits))

    data = ArrayDataset(np.zeros((8, 2)), np.zeros(8, np.int64))
    with pytest.raises(Diverged, match="test loss became nan at step 0"):
        fit(Learner(), data, data, TrainConfig(batch_size=4, epochs=1, train_eval="running"), progress=False)


class _FullDevice(io.StringIO):
    """Standard output redirected to a full disk (`twinnet summary > /dev/full`)."""

    def write(self, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("argv", [["summary", "mlp-cifar"], ["list"]])
def test_standard_output_that_cannot_be_written_is_named_and_the_stream_restored(argv, capsys, monkeypatch):
    full = _FullDevice()
    monkeypatch.setattr(sys, "stdout", full)
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "No space left on device, writing standard output" in err[0] and "files written" not in err[0]
    assert sys.stdout is full  # main's guard is gone once it returns


def test_a_file_that_cannot_be_written_is_not_blamed_on_standard_output(world, capsys, monkeypatch):
    import twinnet.runs

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(twinnet.runs.os, "fsync", no_space)
    code = main(["run", "mlp-compare", "--quick", "--out", str(world.root / "runs" / "nospace")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "No space left on device" in err[-1] and "standard output" not in err[-1]


def test_a_finished_runs_report_that_cannot_be_written_says_how_to_write_it_again(world, capsys, monkeypatch):
    import twinnet.runs

    run, real_replace = world.run("finished-run"), os.replace

    def full_disk_for_reports(src, dst):
        if str(dst).endswith("report.md"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(twinnet.runs.os, "replace", full_disk_for_reports)
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err
    assert f"once it can be written, `twinnet report {run}` draws the run's report again" in err
    from twinnet.cli import _report_hint  # a file outside a finished run's folder gets no such hint

    assert _report_hint(str(world.root / "report.md")) == "" and _report_hint(None) == ""


def test_a_full_disk_at_a_checkpoint_is_one_line_and_leaves_no_half_written_file(world, capsys, monkeypatch):
    import twinnet.runs

    out, real_replace = world.root / "runs" / "full", os.replace

    def full_disk_for_checkpoints(src, dst):
        if str(dst).endswith(".pt") or str(dst).endswith(".sha256"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(twinnet.runs.os, "replace", full_disk_for_checkpoints)
    code = main(["run", "mlp-cifar", "--quick", "--data-dir", str(world.data), "--out", str(out), "--threads", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "No space left on device" in err[0] and "Traceback" not in err[0]
    assert not list(out.rglob("*.tmp")) and not (out / "checkpoint.pt").exists()
    for name in ("config.json", "env.json"):  # what was written is whole
        json.loads((out / name).read_text())
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1]  # one step per epoch here: the evaluations before the first checkpoint


@pytest.mark.parametrize("crash_at", [1, 2, 3])
def test_a_checkpoint_stopped_at_any_write_still_resumes_even_twice_in_a_row(crash_at, tmp_path, monkeypatch):
    """save() writes three files one after another; stopped before any of them, by one crash or by two in
    a row, the checkpoint on disk is intact and its digest file accepts it."""
    import twinnet.runs
    from twinnet import checkpoint
    from twinnet.train import History, LoopState

    class Learner:
        def __init__(self, w):
            self.w = w

        def training_state(self):
            return {"w": np.full(3, self.w)}

    def state(step):
        return LoopState(step, History(), (0.0, 0, 0), {"s": step}, 0.0)

    path, real_write = tmp_path / "c.pt", twinnet.runs.atomic_write_bytes
    checkpoint.save(path, Learner(1.0), state(1), {})
    for w in (2.0, 3.0):  # two saves in a row, each stopped before its write number crash_at
        writes = []

        def counting(p, data):
            writes.append(p)
            if len(writes) == crash_at:
                raise KeyboardInterrupt
            real_write(p, data)

        monkeypatch.setattr(checkpoint, "atomic_write_bytes", counting)
        with pytest.raises(KeyboardInterrupt):
            checkpoint.save(path, Learner(w), state(int(w)), {})
        monkeypatch.setattr(checkpoint, "atomic_write_bytes", real_write)
        payload = checkpoint.read(path)  # accepted, whichever checkpoint is on disk
        # stopped before the checkpoint was replaced (writes 1, 2): the first one still; after (write 3): the new one
        assert payload["loop"]["step"] == (int(w) if crash_at == 3 else 1)
        np.testing.assert_array_equal(payload["learner"]["w"], np.full(3, float(payload["loop"]["step"])))


def test_an_append_after_a_whole_last_line_without_its_newline_keeps_it(tmp_path):
    from twinnet.runs import append_line, read_jsonl

    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}')  # whole, its newline never written
    append_line(path, {"a": 3})
    assert [r["a"] for r in read_jsonl(path)] == [1, 2, 3]
    path.write_text('{"a": 1}\n{"a": 2, "b')  # cut short
    append_line(path, {"a": 3})
    assert [r["a"] for r in read_jsonl(path)] == [1, 3] and path.read_text().endswith('{"a": 3}\n')


def test_a_failed_rename_names_the_file_being_written_not_its_temporary_file(tmp_path):
    from twinnet.runs import atomic_write_bytes

    target = tmp_path / "report.md"
    target.mkdir()  # a folder where the file goes: the rename fails
    with pytest.raises(OSError) as caught:
        atomic_write_bytes(target, b"new")
    assert caught.value.filename == str(target) and target.is_dir()
    assert list(tmp_path.iterdir()) == [target]  # the temporary file is gone


def test_a_folder_that_takes_no_new_file_names_the_file_asked_for_not_a_temporary_one(tmp_path, monkeypatch):
    import twinnet.runs

    def refused(*args, **kwargs):  # as /proc or a read-only folder answers
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), f"{kwargs['dir']}/{kwargs['prefix']}x.tmp")

    monkeypatch.setattr(twinnet.runs.tempfile, "mkstemp", refused)
    target = tmp_path / "grade.json"
    with pytest.raises(OSError) as caught:
        twinnet.runs.atomic_write_bytes(target, b"{}")
    assert caught.value.filename == str(target) and caught.value.errno == errno.ENOENT
    assert not target.exists()


def test_a_finished_runs_metrics_cut_short_are_refused_and_its_report_kept(world, capsys):
    run = world.run("finished-run")
    metrics = run / "metrics.jsonl"
    whole = metrics.read_text()
    assert whole.count("\n") >= 2
    metrics.write_text(whole[: whole.index("\n") + 20])  # one record, then half of the next
    before = snapshot(run)
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert "metrics.jsonl ends in a line cut short (line 2), though its run finished" in err and "restore it" in err
    assert "Traceback" not in err and snapshot(run) == before  # report.md and the figures as they were


def test_a_resume_cleans_the_temporary_files_a_killed_write_left(world, capsys):
    run = world.run()
    leftovers = [run / ".checkpoint.pt.abc123.tmp", run / ".metrics.jsonl.x.tmp"]
    for p in leftovers:
        p.write_bytes(b"half")
    assert main(["run", "mlp-cifar", "--resume", str(run), "--data-dir", str(world.data), "--threads", "1"]) == 0
    assert not any(p.exists() for p in leftovers) and (run / "summary.json").exists()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_run_files_honour_the_umask(umask, mode, world, capsys):
    old = os.umask(umask)
    try:
        assert main(["run", "mlp-compare", "--quick", "--out", world.out(), "--set", "datasets=moons"]) == 0
    finally:
        os.umask(old)
    for name in ("config.json", "env.json", "summary.json", "report.md", "metrics.jsonl", "moons.npz"):
        assert (Path(world.out()) / name).stat().st_mode & 0o777 == mode, name


def test_a_sweep_tolerates_a_results_line_cut_short_by_a_kill(world, capsys):
    run = world.run("sweep-run")
    (run / "summary.json").unlink()
    with open(run / "results.jsonl", "a") as f:
        f.write('{"model": "rnn", "length": 9, "se')  # an append that never finished: no newline after it
    # the resume adds a length: its result is appended after the cut line, which must not spoil it
    assert main(["run", "palindrome-sweep", "--resume", str(run), "--set", "lengths=3,4"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["runs"] == 2 and summary["missing_runs"] == 0
    lines = (run / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["length"] for line in lines] == [3, 4]  # the cut line is gone, the rest whole
    assert main(["report", str(run)]) == 0


def _twinnet(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TWINNET_LOG_EVERY_S": "inf"}
    return subprocess.Popen([sys.executable, "-m", "twinnet", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, **kwargs)


def _wait_for(predicate: Callable[[], bool], proc: subprocess.Popen, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the run ended first: {proc.communicate()}"
        assert time.monotonic() < deadline, "timed out waiting for the run"
        time.sleep(0.02)


def _records(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")] if path.exists() else []


@pytest.mark.slow
def test_sigterm_ends_an_image_run_as_ctrl_c_does(world):
    out = world.root / "runs" / "term"
    proc = _twinnet("run", "mnist-numpy", "--data-dir", str(world.data), "--out", str(out), "--threads", "1",
                    "--set", "verify=false", "--set", "epochs=200", "--set", "batch_size=50")
    _wait_for(lambda: (out / "checkpoint.pt").exists(), proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err
    assert f"twinnet run mnist-numpy --resume {out}" in err and "interrupted" in err


KILL_SETS = ("verify=false", "epochs=5", "batch_size=50", "eval_every=1", "eval_unit=step", "crop_pad=2",
             "rotate=5", "test_subset=40")


@pytest.mark.slow
def test_kill_9_at_a_random_step_then_resume_ends_bit_identical(world):
    """SIGKILL lands at a step drawn at random (after the first checkpoint); the resumed run must equal an
    unbroken one in every figure, record and prediction."""
    common = ["--data-dir", str(world.data), "--threads", "1", *(a for s in KILL_SETS for a in ("--set", s))]
    whole, broken = world.root / "runs" / "whole", world.root / "runs" / "broken"
    proc = _twinnet("run", "mnist-numpy", "--out", str(whole), *common)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()
    steps_per_epoch = 6  # 300 images, batch 50
    kill_at = int(np.random.default_rng().integers(steps_per_epoch + 1, 4 * steps_per_epoch))
    proc = _twinnet("run", "mnist-numpy", "--out", str(broken), *common)
    _wait_for(lambda: len(_records(broken)) > kill_at, proc)
    proc.kill()
    proc.wait()
    assert not (broken / "summary.json").exists(), f"the run ended before the kill at step {kill_at}"
    resumed = _twinnet("run", "mnist-numpy", "--resume", str(broken), "--data-dir", str(world.data))
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()

    a, b = (json.loads((d / "summary.json").read_text()) for d in (whole, broken))
    for key in ("test_acc", "test_loss", "train_acc", "train_loss", "best_test_acc", "steps", "per_class_acc"):
        assert a[key] == b[key], (key, kill_at)
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("time_s", "eval_s")} for r in rs]  # noqa: E731
    assert strip(_records(whole)) == strip(_records(broken)), kill_at
    pa, pb = np.load(whole / "predictions.npz"), np.load(broken / "predictions.npz")
    np.testing.assert_array_equal(pa["y_pred"], pb["y_pred"])
    env = json.loads((broken / "env.json").read_text())
    assert env["threads"] == 1 and env["resumed"][0]["threads"] == 1  # the resumed run kept its thread count


def test_a_stale_data_dir_setting_warns_and_does_not_stop_a_run_that_reads_no_data(world, capsys):
    world.monkeypatch.setenv("TWINNET_DATA_DIR", str(world.root / "gone"))
    out = world.root / "pal"
    assert main(["run", "palindrome", "--quick", "--threads", "1", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count(f"$TWINNET_DATA_DIR={world.root / 'gone'} does not exist, so it is ignored") == 1
    assert json.loads((out / "env.json").read_text()).get("data_dir") is None  # the setting was not used


def test_a_data_dir_may_be_one_archive_and_a_stale_setting_is_not_used_by_the_loaders(tmp_path, monkeypatch):
    """``--data-dir`` takes the archive a folder of several must be told to use (CIFAR-10's loader reads a file);
    a $TWINNET_DATA_DIR that does not exist is ignored by the loaders too, as the warning says."""
    from twinnet.runner import resolve_data_dir

    archive = tmp_path / "b.tar"
    archive.write_bytes(b"")
    assert resolve_data_dir(archive) == archive.resolve()
    with pytest.raises(TwinnetError, match="does not exist"):
        resolve_data_dir(tmp_path / "gone.tar")
    monkeypatch.setenv("TWINNET_DATA_DIR", str(tmp_path / "nowhere"))
    assert resolve_data_dir(None) is None
    assert "TWINNET_DATA_DIR" not in os.environ


def test_a_palindrome_run_that_diverged_exits_1_and_keeps_its_files(tmp_path, capsys):
    # a sweep counts a diverged length as a result; a run of its own says so as every run does: exit status 1
    out = tmp_path / "rnn"
    assert main(["run", "palindrome", "--quick", "--set", "lr=1e300", "--threads", "1", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "the training loss became non-finite at step" in err and "lower the learning rate" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["outcome"] == "diverged" and summary["diverged_at_step"] >= 1
    assert f"at step {summary['diverged_at_step']:,};" in err
    assert "diverged" in (out / "report.md").read_text() and (out / "step_loss.npz").exists()
    # ... and a sweep of such runs counts each as a result and finishes
    sweep = tmp_path / "sweep"
    assert main(["run", "palindrome-sweep", "--quick", "--set", "lr=1e300", "--set", "models=rnn", "--set", "lengths=3",
                 "--set", "n_seeds=2", "--set", "workers=1", "--threads", "1", "--out", str(sweep)]) == 0
    results = [json.loads(line) for line in (sweep / "results.jsonl").read_text().splitlines()]
    assert [r["summary"]["outcome"] for r in results] == ["diverged", "diverged"]


def test_the_report_of_a_run_that_diverged_says_so(tmp_path, capsys):
    out = tmp_path / "lr"
    assert main(["run", "mlp-compare", "--quick", "--set", "lr=1e30", "--threads", "1", "--out", str(out)]) == 1
    assert json.loads((out / "summary.json").read_text())["outcome"] == "diverged"
    capsys.readouterr()
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert "diverged (a loss that is not finite, at step" in err and "smaller learning rate" in err
    assert "damaged" not in err
    # a group of seeds: no figures over its seeds, and the report says which seed diverged
    group = tmp_path / "group"
    assert main(["run", "mlp-compare", "--quick", "--set", "lr=1e30", "--seeds", "0,1", "--threads", "1",
                 "--out", str(group)]) == 1
    capsys.readouterr()
    assert main(["report", str(group)]) == 2
    assert "is a group of seeds with no figures over them: seed-0 diverged" in capsys.readouterr().err
    (group / "seed-0" / "summary.json").unlink()  # as if stopped
    assert main(["report", str(group)]) == 2
    assert f"it has not finished (stopped, or still running); continue it with `twinnet run mlp-compare --resume " \
           f"{group}`" in capsys.readouterr().err


def test_a_home_matplotlib_cannot_write_in_gets_one_config_folder_under_tmp_and_no_warnings(tmp_path):
    """HOME below a file (a home that cannot hold folders): matplotlib would warn twice and make a new
    temporary folder every run; twinnet points it at one folder of this user's under the temporary directory.
    A writable HOME, or MPLCONFIGDIR already set, is left alone."""
    blocked = tmp_path / "file"
    blocked.write_text("")
    show = ("import os, twinnet.report.plots, matplotlib; matplotlib.get_configdir(); "
            "print(os.environ.get('MPLCONFIGDIR'))")

    temp = tmp_path / "tmp"
    temp.mkdir()

    def config_dir(home, **extra):
        env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME")}
        done = subprocess.run([sys.executable, "-c", show], env={**env, "HOME": str(home), "TMPDIR": str(temp),
                                                                 **extra}, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip(), done.stderr

    chosen, err = config_dir(blocked / "home")
    assert chosen == str(temp / f"twinnet-matplotlib-{os.getuid()}") and (os.stat(chosen).st_mode & 0o777) == 0o700
    assert "Matplotlib created a temporary" not in err and "mkdir -p failed" not in err
    assert config_dir(tmp_path / "writable")[0] == "None"
    assert config_dir(blocked / "home", MPLCONFIGDIR=str(tmp_path / "mine"))[0] == str(tmp_path / "mine")
    os.chmod(chosen, 0o777)  # a folder others may write in (another user's, planted first): not used
    assert "twinnet-matplotlib" not in config_dir(blocked / "home")[0]


def test_a_run_started_with_stdout_or_stderr_closed_finishes_and_saves_everything(tmp_path):
    """`twinnet run ... >&-` (or `2>&-`): what would be printed goes nowhere; the run completes, exit 0."""
    for closed in ("stdout", "stderr"):
        out = tmp_path / closed
        code = (f"import sys; sys.{closed}.close(); sys.{closed} = None; from twinnet.cli import main; "
                f"raise SystemExit(main(['run', 'mlp-compare', '--quick', '--threads', '1', '--set', "
                f"'datasets=moons', '--out', {str(out)!r}]))")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "TWINNET_CACHE_DIR": str(tmp_path / "cache")})
        assert done.returncode == 0, done.stdout + done.stderr
        assert (out / "report.md").is_file() and (out / "summary.json").is_file()
        assert "Error" not in done.stdout + done.stderr


def test_an_interruption_while_the_report_is_written_says_how_to_write_it(tmp_path, capsys, monkeypatch):
    import twinnet.runner

    def interrupted(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(twinnet.runner, "write_report", interrupted)
    out = tmp_path / "run"
    assert main(["run", "mlp-compare", "--quick", "--threads", "1", "--set", "datasets=moons", "--out",
                 str(out)]) == 130
    err = capsys.readouterr().err
    assert f"the run finished, but its report was not written: twinnet report {out} writes it" in err
    assert (out / "summary.json").is_file() and not (out / "report.md").exists()
    monkeypatch.undo()
    assert main(["report", str(out)]) == 0 and (out / "report.md").is_file()


def test_a_resume_whose_data_directory_is_gone_says_so(tmp_path, capsys, monkeypatch):
    from twinnet.runner import choose_data_dir
    from twinnet.runs import RunDir

    monkeypatch.delenv("TWINNET_DATA_DIR", raising=False)
    (tmp_path / "run").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "run" / "env.json").write_text(json.dumps({"data_dir": str(tmp_path / "data")}))
    assert choose_data_dir(None, RunDir(tmp_path / "run")) == tmp_path / "data"  # still there: used
    capsys.readouterr()
    (tmp_path / "data").rename(tmp_path / "moved")
    assert choose_data_dir(None, RunDir(tmp_path / "run")) is None
    err = capsys.readouterr().err
    assert f"the data directory this run started with, {tmp_path / 'data'}, is gone; pass --data-dir" in err


def test_a_damaged_env_json_is_kept_aside_when_a_resume_writes_a_new_one(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "palindrome", "--quick", "--threads", "1", "--out", str(out)]) == 0
    (out / "summary.json").unlink()  # stopped before its summary: a resume finishes it
    damaged = (out / "env.json").read_bytes()[:50]
    (out / "env.json").write_bytes(damaged)
    with pytest.warns(UserWarning, match=r"env.json could not be read \(damaged or edited\); it is kept as "
                                         "env.damaged.json"):
        assert main(["run", "palindrome", "--threads", "1", "--resume", str(out)]) == 0
    assert (out / "env.damaged.json").read_bytes() == damaged  # the old record, as it was
    assert json.loads((out / "env.json").read_text())["resumed"][0]["command"].endswith(f"--resume {out}")


def test_an_out_folder_named_with_printable_unicode_spaces_is_made(tmp_path, capsys):
    """A narrow no-break space (macOS's time-stamped names) or a no-break space ends no line: such a name is a
    run folder like any other, and its path the last line printed."""
    out = tmp_path / "run\u202f10.01\u00a0b"
    assert main(["run", "mlp-compare", "--quick", "--set", "datasets=moons", "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == str(out) and (out / "summary.json").is_file()
