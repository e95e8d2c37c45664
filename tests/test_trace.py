"""One training step traced layer by layer (twinnet.trace): shapes that chain, the im2col products
the NumPy convolution forms, gradients shaped as their parameters, and the model left as it was."""

import json

import numpy as np

from fake_data import write_mnist
from twinnet.architectures import MODELS, build_model
from twinnet.cli import main
from twinnet.trace import MAX_BATCH, trace


def test_a_traced_step_chains_its_shapes_forward_and_back_and_changes_nothing():
    model = build_model("mnist-cnn", "numpy")
    before = {k: v.copy() for k, v in model.state_dict().items()}
    x = np.random.default_rng(0).standard_normal((3, *MODELS["mnist-cnn"].input_shape)).astype(np.float32)
    rows = trace(model, x, np.array([0, 1, 2]))
    forward = [r for r in rows if r.phase == "forward"]
    backward = [r for r in rows if r.phase == "backward"]
    assert rows == forward + backward and forward[0].inputs == (3, 1, 28, 28) and forward[-1].kind == "CrossEntropyLoss"
    for a, b in zip(forward, forward[1:]):  # each layer takes what the one before gave
        assert b.inputs == a.output
    for a, b in zip(backward, backward[1:]):  # and backward hands each layer the gradient of its output
        assert b.inputs == a.output
    assert [r.layer for r in backward[1:]] == [r.layer for r in forward[:-1]][::-1]
    assert backward[-1].output == x.shape
    conv = next(r for r in forward if r.layer == "4")  # 32 -> 64 channels, 3x3, on 14x14
    assert conv.kind == "Conv2d" and "im2col X (588, 288)" in conv.products and "@ W (288, 64) -> (588, 64)" in conv.products
    conv_back = next(r for r in backward if r.layer == "4")
    assert "dW = X^T (288, 588) @ dOut (588, 64)" in conv_back.products and "dweight (64, 32, 3, 3)" in conv_back.grads
    linear = next(r for r in forward if r.layer == "9")
    assert linear.products == "X (3, 3136) @ W^T (3136, 128) -> (3, 128) + b"
    # no step taken, no gradient left, the layers' own methods back
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before if "running" not in k and "num_batches" not in k)
    assert all(p.grad is None for p in model.parameters())
    assert all("forward" not in vars(m) and "backward" not in vars(m) for m in model.modules())


def test_a_recurrent_step_shows_its_products_at_every_time_step():
    model = build_model("palindrome-gru", "numpy")
    x = np.random.default_rng(1).standard_normal((5, *MODELS["palindrome-gru"].input_shape)).astype(np.float32)
    rows = trace(model, x, np.arange(5))
    forward = rows[0]
    backward = next(r for r in rows if r.phase == "backward" and r.kind == "GRU")
    assert forward.inputs == (5, 19, 10) and forward.output == (5, 10)
    assert forward.products.startswith("at each of the 19 time steps (a palindrome of length T = 20 gives T - 1 = 19 input "
                                       "digits; its last digit is the label): weight_ih (384, 10) @ (10, 5) -> (384, 5); "
                                       "weight_hh (384, 128) @ (128, 5) -> (384, 5)")
    assert "then once, on the last state: (5, 128) @ W_ph^T (128, 10) -> (5, 10)" in forward.products
    assert "back through each of the 19 time steps (BPTT)" in backward.products and backward.output == (5, 19, 10)
    assert "dweight_hh += dA(t) (384, 5) @ (5, 128)" in backward.products


def test_a_recurrent_layer_lists_its_time_steps_forward_and_back_from_the_last():
    for name, length, states in [("palindrome-lstm", 9, ("h", "c")), ("palindrome-rnn", 5, ("h",))]:
        model = build_model(name, "numpy")
        x = np.random.default_rng(2).standard_normal((4, length, 10)).astype(np.float32)
        rows = trace(model, x, np.arange(4))
        steps = [r for r in rows if r.kind == "time step"]
        ahead = [r.layer for r in steps if r.phase == "forward"]
        back = [r.layer for r in steps if r.phase == "backward"]
        shown = list(range(1, length + 1)) if length <= 7 else [1, 2, 3, length - 2, length - 1, length]
        assert ahead == [f"t={t}" for t in shown] and back == ahead[::-1]
        elided = [r for r in rows if r.kind == "time steps"]
        assert len(elided) == (2 if length > 7 else 0)  # the steps between, once each way
        gates = 4 if "h" in states and "c" in states else 1
        last = next(r for r in steps if r.phase == "forward" and r.layer == f"t={length}")
        assert last.inputs == (4, 10) and last.output == (128, 4)  # the engine's states: a column per sample
        assert f"pre-activations ({gates * 128}, 4)" in last.products
        assert all(f"{s}({length}) (128, 4)" in last.products and f"{s}({length - 1}) (128, 4)" in last.products
                   for s in states)
        first_back = next(r for r in steps if r.phase == "backward")
        assert first_back.layer == f"t={length}" and first_back.output == (4, 10)
        assert all(f"d{s}({length}) (128, 4)" in first_back.products for s in states)
        # the layer's products row comes first, its steps right after it
        layer_row = next(i for i, r in enumerate(rows) if r.phase == "forward" and r.kind != "time step")
        assert rows[layer_row + 1].layer == "t=1"


def test_an_image_run_keeps_its_traced_step_and_its_report_shows_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TWINNET_CACHE_DIR", str(tmp_path / "cache"))
    write_mnist(tmp_path / "data" / "mnist")
    out = tmp_path / "run"
    assert main(["run", "mnist-numpy", "--quick", "--data-dir", str(tmp_path / "data"), "--set", "verify=false",
                 "--out", str(out)]) == 0
    traced = json.loads((out / "trace.json").read_text())["mnist-cnn"]
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert traced["batch"] == min(cfg["batch_size"], MAX_BATCH) and traced["rows"][0]["inputs"][0] == traced["batch"]
    report = (out / "report.md").read_text()
    assert "## Training procedure: one step traced" in report and "im2col X (" in report
    # the schedule drawn beside the curves is the one that trained: each evaluation's recorded rate on it
    from twinnet.experiments.image import learning_rates
    from twinnet.runs import RunDir

    run = RunDir(out)
    epochs, lrs = learning_rates(run, json.loads((out / "summary.json").read_text()))
    metrics = [m for m in run.metrics() if m["step"] > 0]
    assert len(lrs) == metrics[-1]["step"] and len(set(np.round(lrs, 12))) > 2  # one-cycle: it moves
    assert all(np.isclose(lrs[m["step"] - 1], m["lr"], rtol=1e-12) for m in metrics)
    assert "learning rate at every step" in report
    # and every step's training loss, kept beside the evaluations
    kept = np.load(out / "predictions.npz")["step_loss"]
    assert len(kept) == metrics[-1]["step"] and np.all(np.isfinite(kept)) and "the loss of every training step" in report


def test_the_toy_mlp_run_traces_one_step_per_dataset_with_its_batch_and_layer_shapes(tmp_path):
    out = tmp_path / "mlp"
    assert main(["run", "mlp-compare", "--quick", "--set", "datasets=moons,blobs", "--threads", "1",
                 "--out", str(out)]) == 0
    traced = json.loads((out / "trace.json").read_text())
    assert set(traced) == {"MLP 2-20-2 on moons", "MLP 2-20-3 on blobs"}
    rows = traced["MLP 2-20-3 on blobs"]["rows"]
    first = next(r for r in rows if r["phase"] == "forward" and r["kind"] == "Linear")
    n = traced["MLP 2-20-3 on blobs"]["batch"]
    assert first["inputs"] == [n, 2] and first["output"] == [n, 20] and "(2, 20)" in first["products"]
    assert any(r["phase"] == "backward" and "dbias (20,)" in r["grads"] for r in rows)  # a 1-d shape as Python's
    assert "### MLP 2-20-3 on blobs (NumPy engine, a real batch of N = " in (out / "report.md").read_text()
