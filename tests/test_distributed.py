"""Data parallelism: two processes at batch B follow one process at batch 2B, in both engines."""

import datetime
import json
import os
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="two local processes over gloo")


def _init(rank: int, size: int, store: str) -> None:
    """Join the two-process gloo group, over the loopback interface where there is one (whatever the
    host name resolves to)."""
    import torch

    if os.path.exists("/sys/class/net/lo"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=size,
                                         timeout=datetime.timedelta(seconds=300))  # a lost rank fails, not hangs

STEPS, BATCH = 24, 16


def _train(engine: str, batch_size: int):
    """A moons MLP in float64 trained for STEPS steps; its step losses, evaluation records, and the
    samples each of this process's steps trained on."""
    from twinnet.architectures import mlp_layers
    from twinnet.data import make_toy
    from twinnet.learner import make_learner
    from twinnet.train import TrainConfig, fit
    from twinnet.twins import build_twins

    split = make_toy("moons", n=200, seed=0)
    model = build_twins(lambda nn: nn.Sequential(*mlp_layers(nn, 2, (16,), 2)), "float64", 0)[engine]
    cfg = TrainConfig(optimizer="sgd", lr=0.2, momentum=0.9, batch_size=batch_size, steps=STEPS, eval_every=8,
                      eval_unit="step", clip_norm=1.0)
    learner, seen = make_learner(model, cfg), []
    step = learner.train_step
    learner.train_step = lambda x, y: (seen.append(y.tolist()), step(x, y))[1]
    history = fit(learner, split.train, split.test, cfg, progress=False)
    return history.step_losses, [(r["step"], r["train_loss"], r["test_loss"]) for r in history.records], seen


def _rank(rank: int, size: int, store: str, out: str) -> None:
    import torch

    _init(rank, size, store)
    try:
        result = {engine: _train(engine, BATCH) for engine in ("numpy", "torch")}
        with open(f"{out}.{rank}", "w") as f:
            json.dump(result, f)
    finally:
        torch.distributed.destroy_process_group()


def test_two_ranks_at_batch_b_follow_one_process_at_batch_2b_in_both_engines(tmp_path):
    import torch.multiprocessing as mp

    out = str(tmp_path / "result")
    mp.spawn(_rank, args=(2, str(tmp_path / "store"), out), nprocs=2, join=True)
    ranks = [json.loads(open(f"{out}.{r}").read()) for r in (0, 1)]
    for engine in ("numpy", "torch"):
        assert ranks[0][engine][:2] == ranks[1][engine][:2]  # every rank saw the same global figures
        losses, records, shard0 = ranks[0][engine]
        alone, alone_records, batches = _train(engine, 2 * BATCH)
        # each rank trained on its half of the global batch one process at batch 2B trains on
        assert [a + b for a, b in zip(shard0, ranks[1][engine][2])] == batches and {len(b) for b in shard0} == {BATCH}
        assert len(losses) == STEPS and len(set(np.round(losses, 6))) > 5  # it trained, each step's loss its own
        assert np.allclose(losses, alone, rtol=1e-12, atol=0), engine  # float64 round-off
        for (s, tr, te), (s1, tr1, te1) in zip(records, alone_records):
            assert s == s1 and tr == pytest.approx(tr1, rel=1e-12) and te == pytest.approx(te1, rel=1e-12)
    # a single process at batch B differs: the agreement above is the combining of the two shards
    assert not np.allclose(_train("numpy", BATCH)[0], ranks[0]["numpy"][0], rtol=1e-6)


def _rank_with_a_nan(rank: int, size: int, store: str, out: str) -> None:
    """Rank 1's loss becomes NaN at step 5; what each rank's fit raises goes to a file."""
    import torch

    from twinnet.architectures import mlp_layers
    from twinnet.data import make_toy
    from twinnet.learner import make_learner
    from twinnet.train import Diverged, TrainConfig, fit
    from twinnet.twins import build_twins

    _init(rank, size, store)
    try:
        split = make_toy("moons", n=200, seed=0)
        cfg = TrainConfig(optimizer="sgd", lr=0.1, batch_size=BATCH, steps=STEPS, eval_every=8, eval_unit="step")
        learner = make_learner(build_twins(lambda nn: nn.Sequential(*mlp_layers(nn, 2, (16,), 2)), "float64", 0)
                               ["numpy"], cfg)
        step, calls = learner.train_step, []

        def train_step(x, y):
            calls.append(1)
            loss, correct = step(x, y)
            return (float("nan") if rank == 1 and len(calls) == 5 else loss), correct

        learner.train_step = train_step
        try:
            fit(learner, split.train, split.test, cfg, progress=False)
            message = "no error"
        except Diverged as e:
            message = f"{e.step}: {e}"
        with open(f"{out}.{rank}", "w") as f:
            f.write(message)
    finally:
        torch.distributed.destroy_process_group()


def test_a_non_finite_loss_on_one_rank_stops_every_rank_at_that_step(tmp_path):
    import torch.multiprocessing as mp

    out = str(tmp_path / "result")
    mp.spawn(_rank_with_a_nan, args=(2, str(tmp_path / "store"), out), nprocs=2, join=True)
    for rank in (0, 1):  # both stopped, neither waits for the other: the divergence reached every rank
        assert open(f"{out}.{rank}").read().startswith("5: the training loss became nan at step 5"), rank
