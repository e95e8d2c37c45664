"""Weights cross between engines exactly, and a bad state_dict is refused without side effects."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from twinnet import numpy_nn as nnp
from twinnet.architectures import build_model


def _bitwise_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Same dtype, shape and bytes (so -0.0 and 0.0 differ, as a true copy must preserve)."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _assert_same_state(got: dict, expected: dict) -> None:
    assert list(got) == list(expected)
    bad = [k for k in expected if not _bitwise_equal(np.asarray(got[k]), np.asarray(expected[k]))]
    assert not bad, f"arrays differ for {bad}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["mlp", "mlp-cifar"])
def test_numpy_torch_numpy_round_trip_is_exact(name, dtype):
    source = build_model(name, "numpy").to(dtype)
    sd0 = source.state_dict()
    assert sd0 and all(v.dtype == dtype for v in sd0.values())

    twin = build_model(name, "torch").to(torch.float64 if dtype == np.float64 else torch.float32)
    assert list(twin.state_dict()) == list(sd0)  # same keys, same order
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in sd0.items()})  # strict: keys must match
    _assert_same_state({k: v.numpy() for k, v in twin.state_dict().items()}, sd0)

    back = build_model(name, "numpy")  # float32 and freshly (differently) initialised
    assert any(not _bitwise_equal(v.astype(dtype), sd0[k]) for k, v in back.state_dict().items())
    back.load_state_dict(twin.state_dict())
    _assert_same_state(back.state_dict(), sd0)
    assert back.dtype == dtype
    assert all(p.dtype == dtype for p in back.parameters())


def test_state_dict_and_load_copy_rather_than_alias():
    model = nnp.MLP(3, [4], 2)
    sd = model.state_dict()
    sd["0.weight"] += 1.0  # editing the returned copy must not reach the model
    assert not np.array_equal(model.state_dict()["0.weight"], sd["0.weight"])

    source = {k: v * 2 for k, v in model.state_dict().items()}
    model.load_state_dict(source)
    source["0.weight"] += 1.0  # nor may editing the loaded arrays afterwards
    assert not np.array_equal(model.state_dict()["0.weight"], source["0.weight"])

    twin = torch.nn.Linear(3, 4)
    lin = nnp.Linear(3, 4)
    lin.load_state_dict(twin.state_dict())
    with torch.no_grad():
        twin.weight.add_(1.0)  # nor editing the torch tensors loaded from
    assert not np.array_equal(lin.weight.data, twin.weight.detach().numpy())


def _corrupt(state: dict, kind: str) -> tuple[dict, type, str]:
    """Every value changed (so a partial load would show), plus one defect; the last key of
    the iteration order carries the shape defect so a load-as-you-go would have written the rest."""
    bad = {k: v + 1.0 for k, v in state.items()}
    keys = list(bad)
    if kind == "missing":
        del bad[keys[1]]
        return bad, KeyError, keys[1]
    if kind == "extra":
        bad["9.weight"] = np.zeros((2, 2), dtype=np.float32)
        return bad, KeyError, "9.weight"
    bad[keys[-1]] = np.zeros((bad[keys[-1]].shape[0] + 1,), dtype=np.float32)
    return bad, ValueError, keys[-1]


@pytest.mark.parametrize("kind", ["missing", "extra", "wrong_shape"])
def test_bad_state_dict_raises_and_changes_nothing(kind):
    model = nnp.MLP(3, [4, 5], 2)
    before = model.state_dict()
    params_before = [p.data for p in model.parameters()]
    bad, error, key = _corrupt(before, kind)
    with pytest.raises(error) as excinfo:
        model.load_state_dict(bad)
    assert key in str(excinfo.value)  # the message names the offending key
    _assert_same_state(model.state_dict(), before)
    assert all(p.data is d for p, d in zip(model.parameters(), params_before))
