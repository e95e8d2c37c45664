import numpy as np
import pytest

from twinnet.architectures import MODELS, build_model
from twinnet.structure import format_markdown, format_text, rows_as_dicts, structure


@pytest.mark.parametrize("name", sorted(MODELS))
def test_both_engines_give_the_same_table(name):
    tables = {e: structure(build_model(name, e), MODELS[name].input_shape) for e in ("numpy", "torch")}
    (rows_np, total_np), (rows_t, total_t) = tables["numpy"], tables["torch"]
    assert rows_as_dicts(rows_np) == rows_as_dicts(rows_t)
    assert total_np == total_t == sum(r.params for r in rows_t)


def test_shapes_and_counts_of_the_toy_mlp():
    rows, total = structure(build_model("mlp", "numpy"), (2,))
    assert [(r.kind, r.input_shape, r.output_shape, r.params) for r in rows] == [
        ("Linear", (1, 2), (1, 20), 60), ("ReLU", (1, 20), (1, 20), 0), ("Linear", (1, 20), (1, 2), 42)]
    assert total == 102
    text = format_text(rows_as_dicts(rows), total)
    assert text.splitlines()[-1] == "total parameters: 102; mult-adds for a batch of 1: 80; activations: 168 B"
    assert "| 0 | Linear |" in format_markdown(rows_as_dicts(rows), total)


def test_structure_leaves_the_model_in_its_mode():
    model = build_model("mlp", "torch").train()
    structure(model, (2,))
    assert model.training
    npm = build_model("mlp", "numpy").train()
    structure(npm, (2,))
    assert npm.training and "forward" not in vars(npm[0])


def test_the_table_has_the_batch_weights_buffers_mult_adds_and_activation_memory_of_every_layer():
    rows, total = structure(build_model("mnist-cnn", "torch"), (1, 28, 28), batch=8)
    conv, bn = rows[0], rows[1]
    assert conv.input_shape == (8, 1, 28, 28) and conv.output_shape == (8, 32, 28, 28)
    assert conv.weight == (32, 1, 3, 3) and conv.bias == (32,) and conv.buffers == 0
    assert conv.macs == 8 * 32 * 28 * 28 * (1 * 3 * 3) and conv.activation_bytes == 8 * 32 * 28 * 28 * 4
    assert bn.buffers == 32 + 32 + 1 and bn.macs == 0  # running mean, variance, batches seen
    linear = rows[9]
    assert linear.kind == "Linear" and linear.macs == 8 * 128 * 3136 and linear.weight == (128, 3136)
    text = format_text(rows_as_dicts(rows), total)
    macs = sum(r.macs for r in rows)
    assert text.splitlines()[-1].startswith(f"total parameters: 421,834; mult-adds for a batch of 8: {macs:,}")


def test_a_recurrent_layer_shows_each_weight_and_its_product_at_one_time_step():
    rows, total = structure(build_model("palindrome-rnn", "numpy"), (19, 10), batch=4)
    assert rows[0].input_shape == (4, 19, 10) and rows[0].output_shape == (4, 10) and rows[0].params == total
    steps = {r.name.split(".")[-1]: r for r in rows[1:]}
    assert (steps["W_hx"].input_shape, steps["W_hx"].output_shape, steps["W_hx"].weight) == ((4, 10), (4, 128), (128, 10))
    assert (steps["W_hh"].input_shape, steps["W_hh"].output_shape, steps["W_hh"].macs) == ((4, 128), (4, 128), 4 * 128 * 128)
    assert steps["b_h"].bias == (128,) and steps["b_h"].params == 0
    assert sum(r.params for r in rows) == total  # the weights' rows add nothing to the count


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_a_recurrent_layers_row_counts_every_steps_products_and_the_readout_once(engine):
    rows, total = structure(build_model("palindrome-rnn", engine), (19, 10), batch=4)
    per_step = 4 * 128 * 10 + 4 * 128 * 128  # W_hx and W_hh at each of the 19 steps
    assert rows[0].macs == 19 * per_step + 4 * 10 * 128  # and W_ph once, on the last state
    text = format_text(rows_as_dicts(rows), total)
    assert f"mult-adds for a batch of 4: {rows[0].macs:,}" in text and "product at one time step" in text
    cnn = format_text(rows_as_dicts(structure(build_model("mlp", engine), (2,), batch=4)[0]), total)
    assert "time step" not in cnn


@pytest.mark.parametrize("engine", ["numpy", "torch"])
@pytest.mark.parametrize("model", ["palindrome-rnn", "palindrome-lstm", "palindrome-gru"])
def test_a_recurrent_layers_activations_are_what_its_forward_keeps_for_backpropagation(engine, model):
    rows, _ = structure(build_model(model, engine), (19, 10), batch=4)
    # what the NumPy engine's forward actually keeps for its backward, measured on the same batch
    net = build_model(model, "numpy").to(np.float32)
    net.train(True)
    net.forward(np.zeros((4, 19, 10), dtype=np.float32))
    _, states, _, _ = net._caches[-1]
    kept = sum(a.nbytes for a in states)
    net.clear_caches()
    assert kept > 19 * 4 * 128 * 4  # at least h(t) at every step
    assert rows[0].activation_bytes == kept + 4 * 10 * 4  # and the (4, 10) output, float32 in both engines
    assert all(r.activation_bytes == 0 for r in rows[1:])  # counted once, in the layer's row


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_large_batchs_table_is_the_one_that_batch_itself_gives(name, monkeypatch):
    # the table runs batches of 2 and 3 and scales them: shapes, mult-adds and activations as a batch of 7 gives them
    from twinnet import structure as module

    traced, ran = module._traced, []
    monkeypatch.setattr(module, "_traced", lambda m, shape, batch: (ran.append(batch), traced(m, shape, batch))[1])
    # the NumPy engine's twin of each model gives the same table (above); its convolutions are slow, so here
    # the NumPy engine only where that is quick
    for engine in ("numpy", "torch") if name in ("mlp", "mnist-cnn", "palindrome-lstm") else ("torch",):
        model = build_model(name, engine)
        ran.clear()
        scaled, total = structure(model, MODELS[name].input_shape, 7)
        assert ran == [2, 3]  # scaled, not run at 7
        direct, total_direct = traced(model, MODELS[name].input_shape, 7)
        assert rows_as_dicts(scaled) == rows_as_dicts(direct) and total == total_direct
        assert scaled[0].input_shape[0] == 7


@pytest.mark.parametrize("layer, shapes", [
    ("transpose", [((7, 2), (7, 2)), ((7, 2), (2, 7))]),  # its other dimension is 2, a probe batch's size
    ("mean", [((7, 2), (7, 2)), ((7, 2), ())]),  # the batch reduced away
])
def test_a_layer_that_moves_or_reduces_the_batch_dimension_is_traced_at_the_batch_itself(layer, shapes):
    import torch

    class Odd(torch.nn.Module):
        def forward(self, x):
            return x.T if layer == "transpose" else x.mean()

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), Odd())
    rows, _ = structure(model, (2,), 7)
    assert [(r.input_shape, r.output_shape) for r in rows] == shapes
    assert rows[0].macs == 7 * 2 * 2 and rows[1].activation_bytes == (4 * 14 if layer == "transpose" else 4)
