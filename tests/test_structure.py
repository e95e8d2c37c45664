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
        ("Linear", (2,), (20,), 60), ("ReLU", (20,), (20,), 0), ("Linear", (20,), (2,), 42)]
    assert total == 102
    text = format_text(rows_as_dicts(rows), total)
    assert text.splitlines()[-1] == "total parameters: 102"
    assert "| 0 | Linear |" in format_markdown(rows_as_dicts(rows), total)


def test_structure_leaves_the_model_in_its_mode():
    model = build_model("mlp", "torch").train()
    structure(model, (2,))
    assert model.training
    npm = build_model("mlp", "numpy").train()
    structure(npm, (2,))
    assert npm.training and "forward" not in vars(npm[0])
