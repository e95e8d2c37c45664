"""Checkpoints: a run's whole training state in one atomically replaced file, to continue it exactly.

What is saved: the config the run started with, the learner (weights, optimiser, random state),
``fit``'s loop state (step, history, running sums, batch generator) and any extras the experiment
needs (best weights so far, a curriculum's length). ``fit(..., resume=state)`` then continues to
the same result as an unbroken run.
"""

from __future__ import annotations

import io
from collections.abc import Collection
from pathlib import Path

from twinnet import TwinnetError
from twinnet.runs import atomic_write_bytes
from twinnet.train import History, LoopState


def save(path: Path, learner, state: LoopState, config: dict, extra: dict | None = None) -> None:
    """Write the checkpoint to ``path``: old or new, never half-written."""
    import torch

    h = state.history
    payload = {"config": config, "learner": learner.training_state(), "extra": extra or {},
               "loop": {"step": state.step, "records": h.records, "step_losses": h.step_losses,
                        "stopped_early": h.stopped_early, "running": state.running, "rng_state": state.rng_state,
                        "elapsed_s": state.elapsed_s}}
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


class CheckpointError(TwinnetError):
    """A checkpoint that cannot be resumed from: unreadable, malformed, or saved under other settings."""


def load(path: Path, learner, config: dict, may_change: Collection[str] = (),
         extra_keys: Collection[str] = ()) -> tuple[LoopState, dict]:
    """Restore ``learner`` from ``path``; the loop state to continue from and the extras.

    Raises CheckpointError if the file is unreadable or malformed, lacks one of ``extra_keys``, or was
    saved under other settings than ``config`` (those in ``may_change`` excepted: they move the work,
    not its result). The learner is changed only by a checkpoint that passed every check but the last
    (the learner's own): build a fresh one after an error."""
    import torch

    try:
        # on the CPU first: random states must stay there; load_state_dict moves weights to the model's device
        payload = torch.load(path, map_location="cpu", weights_only=False)
        saved, loop = payload["config"], payload["loop"]
        changed = sorted(k for k, v in config.items() if k not in may_change and saved.get(k) != v)
        history = History(list(loop["records"]), list(loop["step_losses"]), bool(loop["stopped_early"]))
        state = LoopState(int(loop["step"]), history, tuple(loop["running"]), loop["rng_state"],
                          float(loop["elapsed_s"]))
        # files saved before extras had a key of their own kept the image runs' best weights at the top
        extra = payload["extra"] if "extra" in payload else {"best": payload.get("best")}
        if missing := [k for k in extra_keys if k not in extra]:
            raise KeyError(", ".join(missing))
    except Exception as e:  # noqa: BLE001 - any unreadable or malformed checkpoint gets the same advice
        raise CheckpointError(f"cannot resume from {path}: {type(e).__name__}: {e}. Start a new run instead") from e
    if changed:
        raise CheckpointError(f"cannot resume from {path} with changed settings ({', '.join(changed)}): the "
                              f"continued run would not be the one it started as. Drop those --set, or start a new run")
    try:
        learner.load_training_state(payload["learner"])
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"cannot resume from {path}: {e}. Start a new run instead") from e
    return state, extra
