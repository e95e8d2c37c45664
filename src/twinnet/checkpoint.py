"""Checkpoints: a run's whole training state in one atomically replaced file, to continue it exactly.

What is saved: the config the run started with, the learner (weights, optimiser, random state),
``fit``'s loop state (step, history, running sums, batch generator) and any extras the experiment
needs (best weights so far, a curriculum's length). ``fit(..., resume=state)`` then continues to
the same result as an unbroken run.

A checkpoint may come from somewhere else (a shared or downloaded run folder), so it holds plain
data only: tensors, NumPy arrays stored as tensors of their bytes, numbers, strings, lists and
dicts. It is read with ``torch.load(weights_only=True)``, which refuses anything else instead of
running it. A SHA-256 of its bytes is kept beside it (``checkpoint.pt.sha256``) and checked
before it is read, so a damaged file is refused rather than resumed from.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from twinnet import TwinnetError, distributed
from twinnet.runs import atomic_write_bytes
from twinnet.train import History, LoopState

_ARRAY = "__ndarray__"  # marks a NumPy array stored as a uint8 tensor of its bytes
FORMAT = 3  # 1: twinnet 0.1's pickles; 2: 0.2's, before fit kept the best weights and the data's own state


def _plain(obj: Any) -> Any:
    """``obj`` with every NumPy array and scalar replaced by plain data ``torch.load`` may read safely."""
    import torch

    if isinstance(obj, np.ndarray):
        a = obj.copy(order="C")  # (ascontiguousarray would make a 0-d array 1-d)
        return {_ARRAY: torch.from_numpy(a.reshape(-1).view(np.uint8).copy()), "dtype": a.dtype.str,
                "shape": list(a.shape)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj


def _restore(obj: Any) -> Any:
    """The inverse of ``_plain``."""
    if isinstance(obj, dict):
        if _ARRAY in obj:
            dtype = np.dtype(obj["dtype"])
            if dtype.hasobject:
                raise ValueError("an object array")
            return obj[_ARRAY].numpy().view(dtype).reshape(obj["shape"]).copy()
        return {k: _restore(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_restore(v) for v in obj)
    return obj


def digest_path(path: Path) -> Path:
    """Where the SHA-256 of the checkpoint at ``path`` is kept."""
    return Path(path).with_name(Path(path).name + ".sha256")


def save(path: Path, learner, state: LoopState, config: dict, extra: dict | None = None) -> None:
    """Write the checkpoint to ``path`` and its digest beside it: old or new, never half-written.

    The digest file first lists the new digest beside that of the checkpoint on disk now, then the
    checkpoint is replaced, then the old digest is dropped: a stop between any two steps (even two
    stops in a row) leaves a checkpoint its digest file accepts."""
    import torch

    path = Path(path)
    h = state.history
    payload = {"format": FORMAT, "config": config, "learner": learner.training_state(), "extra": extra or {},
               "loop": {"step": state.step, "records": h.records, "step_losses": h.step_losses,
                        "stopped_early": h.stopped_early, "best": h.best, "running": list(state.running),
                        "rng_state": state.rng_state, "elapsed_s": state.elapsed_s,
                        "source_state": state.source_state, "world_size": state.world_size,
                        "rank_random": state.rank_random, "batches_into_epoch": state.batches_into_epoch}}
    buf = io.BytesIO()
    torch.save(_plain(payload), buf)
    data = buf.getvalue()
    new = hashlib.sha256(data).hexdigest()
    old = [hashlib.sha256(path.read_bytes()).hexdigest()] if path.exists() else []
    atomic_write_bytes(digest_path(path), ("\n".join([new, *old]) + "\n").encode())
    atomic_write_bytes(path, data)
    atomic_write_bytes(digest_path(path), (new + "\n").encode())


def remove(path: Path) -> None:
    """Delete a checkpoint and its digest, if they exist."""
    Path(path).unlink(missing_ok=True)
    digest_path(path).unlink(missing_ok=True)


def set_aside(path: Path, suffix: str = ".unusable") -> Path:
    """Rename a checkpoint that cannot be resumed from (and its digest), to keep it for inspection: under a
    name no earlier one set aside holds (``checkpoint.unusable``, then ``checkpoint.unusable-1``, ...)."""
    aside, k = Path(path).with_suffix(suffix), 0
    while aside.exists() or digest_path(aside).exists():
        k += 1
        aside = Path(path).with_suffix(f"{suffix}-{k}")
    Path(path).replace(aside)
    if digest_path(path).exists():
        digest_path(path).replace(digest_path(aside))
    return aside


def _accepted(path: Path) -> list[str]:
    """The digests the digest file beside ``path`` accepts (none if there is no such file)."""
    try:
        return [line.strip() for line in digest_path(path).read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError):
        return []


class CheckpointError(TwinnetError):
    """A checkpoint that cannot be resumed from: unreadable, malformed, or saved under other settings.
    With several ranks, every rank checks the same checkpoint (rank 0's) and raises it alike."""

    every_rank = True


def read(path: Path) -> dict:
    """The checkpoint's contents, after checking its digest; CheckpointError if it cannot be trusted."""
    import pickle

    import torch

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot resume from {path}: {e.strerror}. Restore the file twinnet wrote there, or "
                              "start a new run") from None
    if not digest_path(path).exists():
        raise CheckpointError(f"cannot resume from {path}: there is no {digest_path(path).name} beside it to check it "
                              "against (it was copied without it, or written by twinnet before 0.2). Start a new run")
    if hashlib.sha256(data).hexdigest() not in _accepted(path):
        raise CheckpointError(f"cannot resume from {path}: it does not match its digest {digest_path(path).name}, so "
                              "it was damaged or changed after it was written. Start a new run")
    try:
        return _restore(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
    except pickle.UnpicklingError as e:
        found = next((line.strip() for line in str(e).splitlines() if "GLOBAL" in line), None)
        if found is None:
            raise CheckpointError(f"cannot resume from {path}: it is damaged or not a checkpoint. Start a new "
                                  "run") from None
        raise CheckpointError(f"cannot resume from {path}: it holds more than plain data, so it was not loaded (it "
                              f"could run code: {found[:160]}). Use only checkpoints twinnet wrote, or start a new "
                              "run") from None
    except Exception:  # noqa: BLE001 - truncated, not a zip, ...: the same advice
        raise CheckpointError(f"cannot resume from {path}: it is damaged or not a checkpoint. Start a new "
                              "run") from None


class _Foreign(Exception):
    """A well-formed checkpoint that lacks what this experiment saves beside its state."""


def load(path: Path, learner, config: dict, may_change: Collection[str] = (),
         extra_keys: Collection[str] = (), payload: dict | None = None,
         defaults: dict | None = None) -> tuple[LoopState, dict]:
    """Restore ``learner`` from ``path``; the loop state to continue from and the extras.

    Raises CheckpointError if the file is unreadable, untrusted or malformed, lacks one of
    ``extra_keys``, or was saved under other settings than ``config`` (those in ``may_change``
    excepted: they move the work, not its result). The learner is changed only by a checkpoint that
    passed every check but the last (the learner's own): build a fresh one after an error. ``payload``:
    the file's contents, already ``read`` (by rank 0, for every rank). ``defaults``: each setting's default; one
    the checkpoint holds no value for (added to twinnet since it was written) passes if it is at its default,
    which is how the run trained before the setting existed."""
    payload = read(path) if payload is None else payload
    try:
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            found = payload.get("format") if isinstance(payload, dict) else None
            raise _Foreign("it is not a checkpoint twinnet wrote (it has no format number)" if found is None else
                           f"it is a checkpoint of format {found}, and this twinnet reads format {FORMAT}"
                           + (" (written by twinnet 0.2, which can finish it)" if found == 2 else ""))
        saved, loop, extra = payload["config"], payload["loop"], payload["extra"]
        if not all(isinstance(d, dict) for d in (saved, loop, extra, loop["rng_state"], payload["learner"])):
            raise TypeError("config, loop, extra, rng_state and learner must be dicts")
        number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
        if not (all(isinstance(r, dict) for r in loop["records"]) and all(map(number, loop["step_losses"]))
                and len(loop["running"]) == 3 and all(map(number, loop["running"])) and number(loop["step"])):
            raise TypeError("the loop state is not what twinnet writes")
        best = loop["best"]
        if best is not None and not (isinstance(best, dict) and isinstance(best.get("weights"), dict)
                                     and isinstance(best.get("step"), int) and number(best.get("value"))):
            raise TypeError("its best weights are not what twinnet writes")
        if not isinstance(loop["source_state"], dict):
            raise TypeError("the data's state is not what twinnet writes")
        ranks, streams = loop.get("world_size", 1), loop.get("rank_random", [])
        if not (isinstance(ranks, int) and ranks >= 1 and isinstance(streams, list)
                and len(streams) == (ranks if ranks > 1 else 0) and all(isinstance(r, dict) for r in streams)):
            raise TypeError("its ranks' random states are not what twinnet writes")
        absent = sorted(k for k in config if k not in may_change and k not in saved
                        and not (defaults is not None and k in defaults and defaults[k] == config[k]))
        changed = sorted(k for k, v in config.items() if k not in may_change and k in saved and saved[k] != v)
        history = History(list(loop["records"]), list(loop["step_losses"]), bool(loop["stopped_early"]), best)
        state = LoopState(int(loop["step"]), history, tuple(loop["running"]), loop["rng_state"],
                          float(loop["elapsed_s"]), loop["source_state"], ranks, streams,
                          int(loop.get("batches_into_epoch", 0)))
        if missing := [k for k in extra_keys if k not in extra]:
            raise _Foreign(f"it holds none of {', '.join(missing)}, which this experiment's checkpoints save: it was "
                           "written by another experiment (or another twinnet version)")
    except _Foreign as e:
        raise CheckpointError(f"cannot resume from {path}: {e}. Start a new run instead") from None
    except Exception as e:  # noqa: BLE001 - any malformed checkpoint gets the same advice
        raise CheckpointError(f"cannot resume from {path}: {type(e).__name__}: {e}. Start a new run instead") from None
    now = distributed.world().size
    if state.world_size != now:
        raise CheckpointError(f"cannot resume from {path}: {distributed.other_world(state.world_size, now)}")
    if absent:
        raise CheckpointError(f"cannot resume from {path}: it holds no value for {', '.join(absent)} (saved by another "
                              "version of twinnet, or edited), so it cannot be checked to be the same run. Start a new "
                              "run, or finish it with the twinnet that started it")
    if changed:
        raise CheckpointError(f"cannot resume from {path} with changed settings ({', '.join(changed)}): the "
                              "continued run would not be the one it started as. Drop those --set (without any, the "
                              "run's config.json was edited or damaged, or this checkpoint was copied from another "
                              "run: restore the run's own files), or start a new run")
    try:
        learner.load_training_state(payload["learner"])
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"cannot resume from {path}: {e}. Start a new run instead") from None
    return state, extra


class Checkpointer:
    """The one resume mechanism: a run's checkpoint at ``path``, saved by ``fit`` and restored before it.

    ``config``: the run's settings, compared on restore (those in ``may_change`` excepted); ``extra``:
    facts saved beside the state (after a restore, ``found`` holds the saved ones); those named in
    ``mismatch`` must be equal on restore (e.g. the data's fingerprint), ``mismatch[key]`` the advice
    when one differs; ``defaults``: the settings' defaults (see ``load``). With ``tolerant`` a failed save (a full disk)
    warns once and the run trains on without checkpoints; else it raises."""

    def __init__(self, path: Path, config: dict, may_change: Collection[str] = (), extra: dict | None = None,
                 mismatch: dict[str, str] | None = None, tolerant: bool = False, defaults: dict | None = None) -> None:
        self.path, self.config, self.may_change, self.defaults = Path(path), config, may_change, defaults
        self.extra, self.mismatch, self.tolerant = dict(extra or {}), mismatch or {}, tolerant
        self.saved_step: int | None = None  # the step of the last checkpoint written or restored
        self.found: dict = {}
        self._failed = False

    def exists(self) -> bool:
        return self.path.exists()

    def restore(self, learner) -> LoopState | None:
        """Put ``learner`` back where the checkpoint left it; the loop state to resume (None: no checkpoint)."""
        payload = None
        if distributed.world().size > 1:  # rank 0 reads it (the others may be on machines without the file)
            found = None
            if distributed.world().rank == 0:
                try:
                    found = ("ok", read(self.path)) if self.exists() else ("none",)
                except CheckpointError as e:
                    found = ("error", str(e))
            found = distributed.broadcast(found)
            if found[0] == "none":
                return None
            if found[0] == "error":
                raise CheckpointError(found[1])
            payload = found[1]
        elif not self.exists():
            return None
        state, extra = load(self.path, learner, self.config, self.may_change, extra_keys=self.extra, payload=payload,
                            defaults=self.defaults)
        for key, advice in self.mismatch.items():
            if extra[key] != self.extra[key]:
                raise CheckpointError(f"cannot resume from {self.path}: {advice}")
        self.saved_step, self.found = state.step, extra
        return state

    def save(self, learner, state: LoopState) -> None:
        if self._failed:
            return
        try:
            save(self.path, learner, state, self.config, self.extra)
        except OSError as e:
            if not self.tolerant:
                raise
            self._failed = True  # a full disk, say: the run itself can still finish
            import sys

            print(f"twinnet: cannot save the checkpoint {self.path} ({e.strerror or e}); training goes on without one",
                  file=sys.stderr, flush=True)
            return
        self.saved_step = state.step
