"""Saving and loading a NumPy model's weights as .npz or as a PyTorch state_dict file (.pt, .pth).

Keys are the ``state_dict`` keys, which equal those of the PyTorch twin, so a file
written by one engine loads into the other: ``torch.load(path, weights_only=True)``
reads what ``save(model, "w.pt")`` wrote, and ``load(model, path)`` reads what
``torch.save(torch_model.state_dict(), path)`` wrote.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from twinnet import TwinnetError
from twinnet.numpy_nn import backend
from twinnet.numpy_nn.module import Module
from twinnet.runs import atomic_write_bytes, npz_problem

_NUMPY = (".npz",)
_TORCH = (".pt", ".pth")


class WeightsFileError(TwinnetError, ValueError):
    """A weights file that cannot be read, or whose arrays do not fit the model."""


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _NUMPY:
        return "npz"
    if suffix in _TORCH:
        return "torch"
    raise WeightsFileError(f"cannot tell the format of {str(path)!r} from its extension; use one of {_NUMPY + _TORCH}")


def save(model: Module | Mapping[str, np.ndarray], path: str | Path) -> None:
    """Write the model's ``state_dict`` to ``path`` (.npz, .pt or .pth), atomically."""
    path = Path(path)
    fmt = _format(path)
    state = model.state_dict() if isinstance(model, Module) else {k: backend.to_numpy(v) for k, v in model.items()}
    buffer = io.BytesIO()
    if fmt == "npz":
        np.savez(buffer, **state)
    else:
        import torch  # noqa: PLC0415 - only the .pt format needs it

        torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def read(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays stored in a weights file, keyed as saved."""
    path = Path(path)
    fmt = _format(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {str(path)!r}")
    if fmt == "npz":
        bad = (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile)
        try:
            archive = np.load(path, allow_pickle=False)
        except bad as exc:
            raise WeightsFileError(f"{str(path)!r} is not a valid .npz archive: {npz_problem(path, exc)}") from exc
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise WeightsFileError(f"{str(path)!r} is not a valid .npz archive: it holds one bare array, not named arrays")
        with archive:
            try:
                return {k: archive[k] for k in archive.files}
            except bad as exc:
                raise WeightsFileError(f"{str(path)!r} is not a valid .npz archive: {exc}") from exc
    import torch  # noqa: PLC0415 - only the .pt format needs it

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types (RuntimeError, UnpicklingError, EOFError...)
        raise WeightsFileError(f"{str(path)!r} is not a valid PyTorch weights file: {exc}") from exc
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise WeightsFileError(f"{str(path)!r} does not hold a state_dict (a mapping of names to tensors)")
    return {k: v.detach().cpu().numpy() for k, v in obj.items()}


def load(model: Module, path: str | Path) -> Module:
    """Load weights saved by ``save`` or by ``torch.save(state_dict)``; the model is unchanged if they do not fit."""
    arrays = read(path)
    try:
        model.load_state_dict(arrays)
    except (KeyError, ValueError) as exc:
        reason = exc.args[0] if exc.args else exc
        raise WeightsFileError(f"weights in {str(path)!r} do not fit {type(model).__name__}: {reason}") from exc
    return model
