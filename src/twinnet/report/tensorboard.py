"""A run's records as a TensorBoard event log, written by twinnet itself (TensorBoard need not be installed).

``tensorboard --logdir runs`` then shows every run, and each run of a sweep, as curves: every number of
every record in metrics.jsonl is a scalar, tagged by the record's text fields (``moons/numpy/test_acc``)
and placed at its ``step`` (else its place in the file), and an image run's training loss at every step
(``train_loss_per_step``). The log is written again from those files whenever the report is, in one atomic
write, so a resumed run's log holds what its metrics hold, never a stale or doubled tail.

The file format: TFRecord framing (each record its length, a masked CRC-32C of the length, the bytes, a
masked CRC-32C of the bytes) around protocol-buffer ``Event`` messages (wall_time = 1, step = 2,
file_version = 3, summary = 5; ``Summary.value`` = 1 holding tag = 1 and simple_value = 2).
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

EVENTS = "events.out.tfevents.twinnet"  # TensorBoard reads the files whose names hold "tfevents"
STEP_LOSSES = ("predictions.npz", "step_loss")  # an image run's training loss at every step


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # CRC-32C (Castagnoli), reflected
        table.append(c)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # a negative int64 as protocol buffers write it: ten bytes
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire) + payload


def _bytes(number: int, data: bytes) -> bytes:
    return _field(number, 2, _varint(len(data)) + data)


def _event(wall_time: float, step: int, *, version: str | None = None, tag: str = "", value: float = 0.0) -> bytes:
    msg = _field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(step))
    if version is not None:
        return msg + _bytes(3, version.encode())
    with np.errstate(over="ignore"):  # a scalar is a float32: a loss of 1e114 is stored as inf, not refused
        value = float(np.float32(value))
    scalar = _bytes(1, tag.encode()) + _field(2, 5, struct.pack("<f", value))
    return msg + _bytes(5, _bytes(1, scalar))


def _record(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", _masked(crc32c(length))) + data + struct.pack("<I", _masked(crc32c(data)))


def scalars(records: list[dict], step_losses: np.ndarray | None = None) -> list[tuple[str, int, float]]:
    """(tag, step, value) for every finite number of every record, and for each per-step loss."""
    out = []
    for i, rec in enumerate(records):
        step = rec.get("step")
        step = step if isinstance(step, int) and not isinstance(step, bool) else i
        prefix = "/".join(str(v) for v in rec.values() if isinstance(v, str))
        for key, v in rec.items():
            if key != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                out.append((f"{prefix}/{key}" if prefix else key, step, float(v)))
    if step_losses is not None:
        out += [("train_loss_per_step", k + 1, float(v)) for k, v in enumerate(step_losses) if math.isfinite(v)]
    return out


def event_log(values: list[tuple[str, int, float]], wall_time: float) -> bytes:
    """The bytes of an event file: its version record, then one scalar event per value."""
    events = [_event(wall_time, 0, version="brain.Event:2")]
    events += [_event(wall_time, step, tag=tag, value=value) for tag, step, value in values]
    return b"".join(_record(e) for e in events)


def log_of(run_dir: Path) -> bytes | None:
    """The run's event log from its metrics.jsonl (and per-step losses); None where it has no numbers."""
    from twinnet.runs import METRICS, RunDir

    run = RunDir(run_dir)
    records = run.metrics() if run.file(METRICS).exists() else []
    name, key = STEP_LOSSES
    step_losses = run.load_arrays(name).get(key) if run.file(name).exists() else None
    values = scalars([r for r in records if isinstance(r, dict)], step_losses)
    if not values:
        return None
    return event_log(values, run.file(METRICS).stat().st_mtime if records else 0.0)
