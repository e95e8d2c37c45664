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


def _leave(rank: int, out: str) -> None:
    """Every rank's last exchange delivered, then this rank's mark that its work and the barrier are done."""
    import torch

    torch.distributed.barrier()  # before any rank leaves the group
    open(f"{out}.{rank}.left", "w").close()


def _spawn(fn, tmp_path, out: str) -> None:
    """Two ranks of ``fn``. Gloo's C++ side rarely aborts a process as it tears its group down (SIGABRT,
    "terminate called without an active exception", under load; sessions 31 and 38): where every rank had
    passed its final barrier first, the work the test checks is done and the abort is torch's, not twinnet's,
    so it is let pass; any other failure fails the test."""
    import torch.multiprocessing as mp

    try:
        mp.spawn(fn, args=(2, str(tmp_path / "store"), out), nprocs=2, join=True)
    except mp.ProcessExitedException as e:
        if e.signal_name != "SIGABRT" or not all(os.path.exists(f"{out}.{r}.left") for r in (0, 1)):
            raise
        import warnings

        warnings.warn(f"rank {e.error_index} aborted in gloo's teardown after the work was done", stacklevel=2)


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
    learner.train_step = lambda x, y, total=None: (seen.append(y.tolist()), step(x, y, total))[1]
    history = fit(learner, split.train, split.test, cfg, progress=False)
    return history.step_losses, [(r["step"], r["train_loss"], r["test_loss"]) for r in history.records], seen


def _rank(rank: int, size: int, store: str, out: str) -> None:
    import torch

    _init(rank, size, store)
    try:
        result = {engine: _train(engine, BATCH) for engine in ("numpy", "torch")}
        with open(f"{out}.{rank}", "w") as f:
            json.dump(result, f)
        _leave(rank, out)
    finally:
        torch.distributed.destroy_process_group()


def test_two_ranks_at_batch_b_follow_one_process_at_batch_2b_in_both_engines(tmp_path):
    out = str(tmp_path / "result")
    _spawn(_rank, tmp_path, out)
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

        def train_step(x, y, total=None):
            calls.append(1)
            loss, correct = step(x, y, total)
            return (float("nan") if rank == 1 and len(calls) == 5 else loss), correct

        learner.train_step = train_step
        try:
            fit(learner, split.train, split.test, cfg, progress=False)
            message = "no error"
        except Diverged as e:
            message = f"{e.step}: {e}"
        with open(f"{out}.{rank}", "w") as f:
            f.write(message)
        _leave(rank, out)
    finally:
        torch.distributed.destroy_process_group()


def test_a_non_finite_loss_on_one_rank_stops_every_rank_at_that_step(tmp_path):
    out = str(tmp_path / "result")
    _spawn(_rank_with_a_nan, tmp_path, out)
    for rank in (0, 1):  # both stopped, neither waits for the other: the divergence reached every rank
        assert open(f"{out}.{rank}").read().startswith("5: the training loss became nan at step 5"), rank


def _bn_mlp(engine: str):
    from twinnet.architectures import mlp_layers
    from twinnet.twins import build_twins

    return build_twins(lambda nn: nn.Sequential(*mlp_layers(nn, 2, (16, 16), 2, batch_norm=True)), "float64",
                       0)[engine]


BN_CFG = dict(optimizer="sgd", lr=0.1, momentum=0.9, steps=STEPS, eval_every=8, eval_unit="step")


def _rank_bn(rank: int, size: int, store: str, out: str) -> None:
    """Both engines' BN MLP trained on two ranks at batch BATCH: step losses and final state."""
    import torch

    from twinnet.data import make_toy
    from twinnet.learner import make_learner
    from twinnet.train import TrainConfig, fit

    _init(rank, size, store)
    try:
        split, result = make_toy("moons", n=200, seed=0), {}
        for engine in ("numpy", "torch"):
            cfg = TrainConfig(batch_size=BATCH, **BN_CFG)
            learner = make_learner(_bn_mlp(engine), cfg)
            history = fit(learner, split.train, split.test, cfg, progress=False)
            result[engine] = {"losses": history.step_losses, "test_acc": [r["test_acc"] for r in history.records],
                              "state": {k: v.tolist() for k, v in learner.state_dict().items()}}
        with open(f"{out}.{rank}", "w") as f:
            json.dump(result, f)
        _leave(rank, out)
    finally:
        torch.distributed.destroy_process_group()


def _ghost_batches(engine: str, parts: int):
    """One process at batch parts*BATCH whose batch norm normalises each BATCH-sized part of the batch
    separately ("ghost batches"), the loss the mean of the parts': the per-step losses and final state."""
    import torch

    from twinnet.data import make_toy
    from twinnet.numpy_nn import SGD, CrossEntropyLoss
    from twinnet.train import TrainConfig, batch_indices

    split = make_toy("moons", n=200, seed=0)
    cfg = TrainConfig(batch_size=parts * BATCH, **BN_CFG)
    model, losses = _bn_mlp(engine), []
    if engine == "numpy":
        opt, loss_fn = SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum), CrossEntropyLoss()
    else:
        opt, loss_fn = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum), torch.nn.CrossEntropyLoss()
    model.train()
    batches = batch_indices(len(split.train), cfg, np.random.default_rng(cfg.seed))
    for _, idx in zip(range(STEPS), batches):
        x, y = split.train.x[idx], split.train.y[idx]
        ghosts = [slice(k * BATCH, (k + 1) * BATCH) for k in range(parts)]
        if engine == "numpy":
            opt.zero_grad()
            loss = 0.0
            for g in ghosts:  # each part's gradient accumulates into the parameters' .grad
                loss += loss_fn.forward(model.forward(x[g]), y[g]) / parts
                model.backward(loss_fn.backward() / parts)
        else:
            opt.zero_grad()
            loss = sum(loss_fn(model(torch.as_tensor(x[g])), torch.as_tensor(y[g], dtype=torch.long))
                       for g in ghosts) / parts
            loss.backward()
        opt.step()
        losses.append(float(loss.detach() if engine == "torch" else loss))
    state = model.state_dict()
    return losses, {k: np.asarray(v.numpy() if engine == "torch" else v) for k, v in state.items()}


def test_batch_norm_keeps_per_rank_statistics_as_ghost_batches_and_one_shared_model(tmp_path):
    """The scheme promised (twinnet.distributed): each rank normalises its own shard, so 2 ranks at
    batch B equal one process normalising each B-sized half of its 2B batch separately, to float64
    round-off (rtol 1e-12 on every step's loss, 1e-10 on the final weights); the running statistics
    are averaged over the ranks, so both ranks hold one model and report the same evaluations."""
    out = str(tmp_path / "result")
    _spawn(_rank_bn, tmp_path, out)
    ranks = [json.loads(open(f"{out}.{r}").read()) for r in (0, 1)]
    for engine in ("numpy", "torch"):
        mine = ranks[0][engine]
        assert mine == ranks[1][engine], engine  # one model on both ranks: buffers and evaluations too
        losses, state = _ghost_batches(engine, 2)
        assert len(set(np.round(losses, 6))) > 5
        np.testing.assert_allclose(mine["losses"], losses, rtol=1e-12, atol=0, err_msg=engine)
        weights = [k for k in state if not k.split(".")[-1].startswith(("running", "num_batches"))]
        assert len(weights) == 10  # three Linear layers, two BatchNorm1d
        for k in weights:
            np.testing.assert_allclose(mine["state"][k], state[k], rtol=1e-10, atol=1e-13, err_msg=f"{engine} {k}")
    # the scheme is not one process at 2B, whose batch statistics span the whole batch
    assert not np.allclose(_train_bn_whole("numpy"), ranks[0]["numpy"]["losses"], rtol=1e-6)


def _train_bn_whole(engine: str) -> list[float]:
    """One process training the BN MLP at batch 2*BATCH: batch statistics over the whole batch."""
    from twinnet.data import make_toy
    from twinnet.learner import make_learner
    from twinnet.train import TrainConfig, fit

    cfg = TrainConfig(batch_size=2 * BATCH, **BN_CFG)
    return fit(make_learner(_bn_mlp(engine), cfg), make_toy("moons", n=200, seed=0).train, None, cfg,
               progress=False).step_losses


def test_more_ranks_on_a_node_than_it_has_gpus_is_one_line_before_any_gpu_is_touched(monkeypatch):
    """torchrun --nproc_per_node=2 on a machine with one GPU: the second rank names the mismatch."""
    import torch

    from twinnet import TwinnetError, distributed

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: pytest.fail("set_device reached"))
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(TwinnetError, match=r"local GPU 1, but torch sees 1 GPU\(s\) here; launch at most 1"):
        distributed.init_from_env(cuda=True)


@pytest.mark.parametrize("env, told", [
    ({"TWINNET_DIST_TIMEOUT": "nan"}, r"TWINNET_DIST_TIMEOUT='nan': must be a number of seconds from 1 to"),
    ({"TWINNET_DIST_TIMEOUT": "0"}, r"TWINNET_DIST_TIMEOUT='0': must be"),
    ({"TWINNET_DIST_TIMEOUT": "-1"}, r"TWINNET_DIST_TIMEOUT='-1': must be"),
    ({"TWINNET_DIST_TIMEOUT": "1e30"}, r"TWINNET_DIST_TIMEOUT='1e30': must be"),
    ({"TWINNET_DIST_TIMEOUT": "abc"}, r"TWINNET_DIST_TIMEOUT='abc': must be"),
    ({"RANK": "abc"}, r"RANK='abc': must be a whole number >= 0, as torchrun sets it"),
    ({"WORLD_SIZE": "-2"}, r"WORLD_SIZE='-2': must be a whole number"),
    ({"RANK": "2"}, r"RANK=2 is not below WORLD_SIZE=2"),
])
def test_torchrun_settings_that_cannot_hold_are_named_before_the_group_is_joined(monkeypatch, env, told):
    """A timeout that is no duration (nan, 0, a negative or astronomical one) or a rank that is no rank is blamed on
    its variable in one line, not on the rendezvous the process group then fails to reach."""
    import torch

    from twinnet import TwinnetError, distributed

    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda *a, **k: pytest.fail("joined"))
    for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", **env}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(TwinnetError, match=told):
        distributed.init_from_env(cuda=False)


@pytest.mark.parametrize("sets, cuda", [((), True), (("device=cpu",), False), (("engine = numpy",), False),
                                        (("device=cuda",), True), (("device=auto",), True)])
def test_a_torchrun_run_kept_on_the_cpu_joins_without_nccl_on_a_node_with_gpus(monkeypatch, capsys, sets, cuda):
    """On a GPU node, --set device=cpu (or the NumPy engine) asks for gloo alone: no rank needs a GPU of its own."""
    import torch

    from twinnet import TwinnetError, distributed
    from twinnet.cli import main

    def joined(cuda: bool) -> str:
        raise TwinnetError(f"joined with cuda={cuda}")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(distributed, "launched", lambda: True)
    for name, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "2")):  # as torchrun sets them
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(distributed, "init_from_env", joined)
    argv = ["run", "mlp-compare", "--quick"]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 2
    assert f"joined with cuda={cuda}" in capsys.readouterr().err
