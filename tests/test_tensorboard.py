"""The TensorBoard event log every run writes: its framing, its messages and what it holds."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from twinnet.cli import main
from twinnet.report import tensorboard


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = buf[i]
        n |= (b & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not b & 0x80:
            return n, i


def _fields(buf: bytes) -> list[tuple[int, object]]:
    """A protocol-buffer message's (field number, value) pairs, decoded by wire type."""
    out, i = [], 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = struct.unpack_from("<d", buf, i)[0], i + 8
        elif wire == 5:
            value, i = struct.unpack_from("<f", buf, i)[0], i + 4
        else:
            assert wire == 2, wire
            size, i = _varint(buf, i)
            value, i = buf[i:i + size], i + size
        out.append((number, value))
    return out


def read_events(data: bytes) -> list[dict]:
    """Every event of a TFRecord file, each record's two checksums verified."""
    events, i = [], 0
    while i < len(data):
        header = data[i:i + 8]
        (length,) = struct.unpack("<Q", header)
        assert struct.unpack_from("<I", data, i + 8)[0] == tensorboard._masked(tensorboard.crc32c(header))
        body = data[i + 12:i + 12 + length]
        assert struct.unpack_from("<I", data, i + 12 + length)[0] == tensorboard._masked(tensorboard.crc32c(body))
        i += 16 + length
        event = dict(_fields(body))
        if 5 in event:  # summary -> value -> (tag, simple_value)
            value = dict(_fields(dict(_fields(event[5]))[1]))
            event["tag"], event["value"] = value[1].decode(), value[2]
        events.append(event)
    return events


def test_crc32c_gives_the_castagnoli_check_value():
    assert tensorboard.crc32c(b"123456789") == 0xE3069283  # the standard check value of CRC-32C
    assert tensorboard.crc32c(b"") == 0


def test_every_finite_number_of_every_record_becomes_a_scalar_at_its_step():
    records = [{"dataset": "moons", "engine": "numpy", "step": 10, "test_acc": 0.5, "flag": True},
               {"dataset": "moons", "engine": "numpy", "step": 20, "test_acc": 0.75, "loss": float("nan")},
               {"T": 5, "test_acc": 1.0}]  # no step: its place in the file
    values = tensorboard.scalars(records, np.array([2.0, 1.5, np.inf, 1.0]))
    assert values == [("moons/numpy/test_acc", 10, 0.5), ("moons/numpy/test_acc", 20, 0.75), ("T", 2, 5.0),
                      ("test_acc", 2, 1.0), ("train_loss_per_step", 1, 2.0), ("train_loss_per_step", 2, 1.5),
                      ("train_loss_per_step", 4, 1.0)]
    events = read_events(tensorboard.event_log(values, wall_time=1234.5))
    assert events[0][3] == b"brain.Event:2" and events[0][1] == 1234.5
    assert [(e["tag"], e[2], e["value"]) for e in events[1:]] == values  # all exact in float32
    assert all(e[1] == 1234.5 for e in events)


def test_a_run_writes_its_records_as_a_tensorboard_log_and_a_resume_rewrites_it(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "palindrome", "--quick", "--out", str(out), "--threads", "1"]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = read_events((out / tensorboard.EVENTS).read_bytes())
    accs = [(e[2], e["value"]) for e in events[1:] if e["tag"].endswith("test_acc")]
    assert accs == [(r["step"], pytest.approx(r["test_acc"], rel=1e-6)) for r in records]
    assert len(accs) >= 2
    assert "events.out.tfevents.twinnet" in (out / "report.md").read_text()  # the files section names it
    # the log is the metrics file's, written again with the report: a record gone is gone from the log
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[:1]))
    assert main(["report", str(out)]) == 0
    accs = [e[2] for e in read_events((out / tensorboard.EVENTS).read_bytes())[1:] if e["tag"].endswith("test_acc")]
    assert accs == [records[0]["step"]]


def test_a_number_beyond_float32_is_stored_as_an_infinity_of_its_sign():
    values = [("loss", 1, 1e114), ("loss", 2, -1e300), ("loss", 3, 3.0e38)]  # a diverging run's losses
    events = read_events(tensorboard.event_log(values, wall_time=1.0))
    assert [e["value"] for e in events[1:]] == [np.inf, -np.inf, pytest.approx(3.0e38, rel=1e-7)]


def test_a_run_whose_losses_overflow_float32_still_gets_its_report(tmp_path):
    out = tmp_path / "run"  # lr 1e10 on moons: finite float64 losses near 1e114, no divergence
    assert main(["run", "mlp-compare", "--quick", "--set", "datasets=moons", "--set", "lr=1e10", "--out", str(out),
                 "--threads", "1"]) == 0
    losses = [r["train_loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
              if "train_loss" in r]
    assert max(losses) > 3.5e38  # the case: float64 yes, float32 no
    assert (out / "report.html").exists()
    assert any(e.get("value") == np.inf for e in read_events((out / tensorboard.EVENTS).read_bytes()))
