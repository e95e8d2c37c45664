"""Saving and loading weights: .npz and PyTorch state_dict files, across both engines, and the error cases."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from twinnet import TwinnetError
from twinnet import numpy_nn as nnp
from twinnet.numpy_nn import serialize
from twinnet.torch_nn import MLP as TorchMLP

SIZES = dict(n_inputs=4, hidden=[6, 5], n_classes=3)


def _numpy_model(seed: int) -> nnp.MLP:
    nnp.init.manual_seed(seed)
    return nnp.MLP(**SIZES)


@pytest.fixture(autouse=True)
def _keep_shared_generator(monkeypatch):
    """Models here are built with manual_seed; leave the shared generator as other tests expect it."""
    monkeypatch.setattr(nnp.init, "_rng", nnp.init._rng)


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("suffix", [".npz", ".pt", ".pth"])
def test_round_trip_between_numpy_models(tmp_path, suffix):
    src, dst = _numpy_model(0), _numpy_model(1)
    assert not np.array_equal(src.state_dict()["0.weight"], dst.state_dict()["0.weight"])
    path = tmp_path / f"w{suffix}"
    serialize.save(src, path)
    assert serialize.load(dst, path) is dst
    _assert_same_state(dst.state_dict(), src.state_dict())
    assert dst.state_dict()["0.weight"].dtype == np.float32
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_npz_keys_are_the_state_dict_keys(tmp_path):
    model = _numpy_model(0)
    serialize.save(model, tmp_path / "w.npz")
    with np.load(tmp_path / "w.npz", allow_pickle=False) as f:
        assert sorted(f.files) == sorted(model.state_dict())
        np.testing.assert_array_equal(f["2.bias"], model.state_dict()["2.bias"])


def test_numpy_model_to_torch_model(tmp_path):
    model = _numpy_model(0).double()
    serialize.save(model, tmp_path / "w.pt")
    twin = TorchMLP(**SIZES).double()
    twin.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    x = np.random.default_rng(0).standard_normal((8, 4))
    with torch.no_grad():
        t_out = twin(torch.tensor(x)).numpy()
    np.testing.assert_allclose(model.forward(x), t_out, rtol=1e-12, atol=1e-14)


def test_torch_saved_state_dict_to_numpy_model(tmp_path):
    torch.manual_seed(0)
    twin = TorchMLP(**SIZES)
    torch.save(twin.state_dict(), tmp_path / "torch.pth")
    model = _numpy_model(5)
    serialize.load(model, tmp_path / "torch.pth")
    _assert_same_state(model.state_dict(), {k: v.numpy() for k, v in twin.state_dict().items()})


def test_save_accepts_a_state_dict(tmp_path):
    state = _numpy_model(0).state_dict()
    serialize.save(state, tmp_path / "w.npz")
    _assert_same_state(serialize.read(tmp_path / "w.npz"), state)


# --- errors ------------------------------------------------------------------------------------------


def _saved_state(tmp_path, suffix, state) -> os.PathLike:
    path = tmp_path / f"bad{suffix}"
    serialize.save(state, path)
    return path


MISFITS = {  # name: (how the saved state is spoilt, the key the error must name)
    "missing key": (lambda s: s.pop("4.bias"), "4.bias"),
    "extra key": (lambda s: s.update({"9.weight": np.zeros((2, 2), np.float32)}), "9.weight"),
    "wrong shape": (lambda s: s.update({"2.weight": np.zeros((5, 7), np.float32)}), "2.weight"),
}


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
@pytest.mark.parametrize("misfit", MISFITS)
def test_misfitting_weights_leave_the_model_unchanged(tmp_path, suffix, misfit):
    state = _numpy_model(0).state_dict()
    spoil, key = MISFITS[misfit]
    spoil(state)
    path = _saved_state(tmp_path, suffix, state)
    model = _numpy_model(1)
    before = model.state_dict()
    with pytest.raises(ValueError, match=key) as info:
        serialize.load(model, path)
    assert str(path) in str(info.value)
    _assert_same_state(model.state_dict(), before)


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
@pytest.mark.parametrize(
    "content",
    [b"", b"not an archive at all", b"PK\x03\x04truncated zip", pickle.dumps({"0.weight": [1.0, 2.0]}, protocol=2)],
    ids=["empty", "text", "truncated-zip", "pickle"],
)
def test_invalid_file_gives_a_clear_error_naming_it(tmp_path, suffix, content):
    path = tmp_path / f"weights{suffix}"
    path.write_bytes(content)
    model = _numpy_model(1)
    before = model.state_dict()
    with pytest.raises(serialize.WeightsFileError, match="not a valid|does not hold a state_dict") as info:
        serialize.load(model, path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, TwinnetError)
    _assert_same_state(model.state_dict(), before)


def test_files_that_are_archives_but_not_state_dicts(tmp_path):
    np.save(tmp_path / "bare.npy", np.zeros(3))
    os.replace(tmp_path / "bare.npy", tmp_path / "bare.npz")
    with pytest.raises(ValueError, match="bare.npz.*not a valid .npz"):
        serialize.read(tmp_path / "bare.npz")
    (tmp_path / "text.npz").write_text("not weights at all\n")  # NumPy would call it "pickled data"
    with pytest.raises(ValueError, match="text.npz.*not a zip archive's") as info:
        serialize.read(tmp_path / "text.npz")
    assert "pickle" not in str(info.value)
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(ValueError, match="tensor.pt.*does not hold a state_dict"):
        serialize.read(tmp_path / "tensor.pt")


def test_unknown_extension_and_missing_file(tmp_path):
    model = _numpy_model(0)
    with pytest.raises(ValueError, match="w.bin"):
        serialize.save(model, tmp_path / "w.bin")
    assert not (tmp_path / "w.bin").exists()
    with pytest.raises(FileNotFoundError, match="nothere.npz"):
        serialize.load(model, tmp_path / "nothere.npz")


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_a_failed_save_leaves_the_old_file_intact(tmp_path, monkeypatch, suffix):
    path = tmp_path / f"w{suffix}"
    serialize.save(_numpy_model(0), path)
    old = path.read_bytes()

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)  # the write is interrupted before the rename
    with pytest.raises(OSError, match="disk full"):
        serialize.save(_numpy_model(1), path)
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
