"""``torchrun ... -m twinnet run``: two CPU processes (gloo) train one run, end to end through the CLI.

Each test launches torchrun as a user would, with a time limit: a rank that hangs fails the test
instead of stalling the suite."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fake_data import write_mnist

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="two local processes over gloo")]

LIMIT_S = 300
SETS = ("verify=false", "epochs=4", "batch_size=25", "eval_every=1", "eval_unit=step", "test_subset=60",
        "crop_pad=2", "checkpoint_every=6")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_mnist(root / "mnist", 300, 100)
    return root


def _env() -> dict:
    env = {**os.environ, "TWINNET_LOG_EVERY_S": "inf", "PYTHONUNBUFFERED": "1"}
    env.pop("TWINNET_THREADS", None)
    if os.path.exists("/sys/class/net/lo"):  # whatever the host name resolves to
        env["GLOO_SOCKET_IFNAME"] = "lo"
    return env


def _torchrun(*args, procs: int = 2, script: Path | None = None) -> subprocess.Popen:
    """``torchrun --standalone --nproc_per_node=PROCS -m twinnet ARGS`` (or ``SCRIPT ARGS``)."""
    target = [str(script)] if script is not None else ["--module", "twinnet"]
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             f"--nproc_per_node={procs}", *target, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"torchrun still running after {LIMIT_S} s (a rank hangs?): {err[-2000:]}")
    return proc.returncode, out, err


def _twinnet_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("twinnet:")]


def _run_args(engine: str, out: Path, data: Path) -> list[str]:
    return ["run", "mnist-numpy", "--out", str(out), "--data-dir", str(data), "--threads", "1",
            "--set", f"engine={engine}", *(a for s in SETS for a in ("--set", s))]


def _records(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def test_an_interrupted_two_process_run_resumes_to_the_unbroken_runs_figures(data, tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    code, out, err = _finish(_torchrun(*_run_args("numpy", whole, data)))
    assert code == 0, err[-3000:]
    assert out.strip().splitlines()[-1] == str(whole)  # rank 0 alone printed: one headline, one path
    assert len(out.strip().splitlines()) == 2 and not _twinnet_lines(err)
    env = json.loads((whole / "env.json").read_text())
    assert env["world_size"] == 2 and env["backend"] == "gloo" and env["threads_per_rank"] == 1

    proc = _torchrun(*_run_args("numpy", broken, data))
    deadline = time.monotonic() + LIMIT_S
    while not ((broken / "checkpoint.pt").exists() and len(_records(broken)) > 9):  # past the checkpoint at step 6
        assert proc.poll() is None, f"the run ended before it was interrupted: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "no checkpoint within the time limit"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # as a scheduler stops a job: torchrun passes it on to every rank
    code, _, err = _finish(proc)
    assert code != 0 and not (broken / "summary.json").exists(), "the run ended before the interruption"

    # another number of processes is refused with one line, and changes nothing
    before = {p.name: p.stat().st_mtime_ns for p in broken.iterdir()}
    alone = subprocess.run([sys.executable, "-m", "twinnet", "run", "mnist-numpy", "--resume", str(broken)],
                           capture_output=True, text=True, env=_env(), timeout=LIMIT_S)
    assert alone.returncode == 2
    lines = _twinnet_lines(alone.stderr)
    assert len(lines) == 1 and "started by 2 processes" in lines[0] and "--nproc_per_node" in lines[0], alone.stderr
    assert {p.name: p.stat().st_mtime_ns for p in broken.iterdir()} == before

    code, out, err = _finish(_torchrun("run", "mnist-numpy", "--resume", str(broken), "--data-dir", str(data)))
    assert code == 0, err[-3000:]
    a, b = (json.loads((d / "summary.json").read_text()) for d in (whole, broken))
    for key in ("test_acc", "test_loss", "train_acc", "train_loss", "best_test_acc", "steps", "per_class_acc"):
        assert a[key] == b[key], key
    strip = lambda rs: [{k: v for k, v in r.items() if k not in ("time_s", "eval_s")} for r in rs]  # noqa: E731
    assert strip(_records(whole)) == strip(_records(broken)) and len(_records(whole)) == 4 * 6 + 1
    np.testing.assert_array_equal(np.load(whole / "predictions.npz")["y_pred"],
                                  np.load(broken / "predictions.npz")["y_pred"])
    assert a["test_acc"] > 0.5  # it learned: the figures compared are those of training


NAN_ON_RANK_1 = """
import os, sys
from twinnet import learner

step, calls = learner.TorchLearner.train_step, []

def train_step(self, x, y, total=None):
    loss, correct = step(self, x, y, total)
    calls.append(1)
    if os.environ["RANK"] == "1" and len(calls) == 5:
        loss = loss * float("nan")
    return loss, correct

learner.TorchLearner.train_step = train_step
from twinnet.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def test_a_non_finite_loss_on_one_rank_ends_the_run_with_one_line_and_no_hang(data, tmp_path):
    script = tmp_path / "nan_on_rank_1.py"
    script.write_text(NAN_ON_RANK_1)
    run = tmp_path / "run"
    start = time.monotonic()
    code, out, err = _finish(_torchrun(*_run_args("torch", run, data), script=script))
    assert code != 0 and time.monotonic() - start < LIMIT_S
    lines = _twinnet_lines(err)
    assert len(lines) == 1, err[-3000:]  # rank 0's line; rank 1 stopped at the same step, silently
    assert lines[0].startswith("twinnet: error: the training loss became nan at step 5"), lines
    summary = json.loads((run / "summary.json").read_text())
    assert summary["outcome"] == "diverged" and summary["diverged_at_step"] == 5
    assert out == ""  # no headline, no path of a finished run


def test_layers_frozen_at_the_start_and_mid_run_train_on_with_two_processes(data, tmp_path):
    """DDP waits for a gradient of every parameter that trained when it was built: after each ``freeze``
    stage (the first conv and its batch norm from the start, the second conv after epoch 1 of 4) the
    exchange is set up again, so the run ends instead of hanging, with the first layers as initialised and
    the second conv where a one-epoch run of the same batches and rate leaves it."""
    import torch

    from twinnet.architectures import MODELS
    from twinnet.checkpoint import read
    from twinnet.twins import build_twins

    runs = {}
    for epochs, freeze in ((1, "2@0"), (4, "2@0,5@1")):
        out = tmp_path / f"epochs-{epochs}"
        code, _, err = _finish(_torchrun(*_run_args("torch", out, data), "--set", f"epochs={epochs}", "--set",
                                         "schedule=constant", "--set", f"freeze={freeze}"))
        assert code == 0, err[-3000:]
        assert json.loads((out / "summary.json").read_text())["steps"] == epochs * 6
        runs[epochs] = {k: torch.as_tensor(v) for k, v in read(out / "checkpoint.pt")["learner"]["model"].items()}
    initial = build_twins(MODELS["mnist-cnn"].build, "float32", 0)["torch"].state_dict()
    for key in ("0.weight", "0.bias", "1.weight", "1.bias"):
        assert torch.equal(runs[4][key], initial[key]), key
    assert torch.equal(runs[4]["4.weight"], runs[1]["4.weight"]) and not torch.equal(runs[1]["4.weight"],
                                                                                      initial["4.weight"])
    assert not torch.equal(runs[4]["9.weight"], runs[1]["9.weight"])  # a layer after them trained on
