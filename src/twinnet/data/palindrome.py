"""Palindromes of digits for the RNN memory task (docs/COURSE.md).

A palindrome of length T has its first ceil(T/2) digits drawn uniformly from 0-9 and the
rest mirrored. A sample is its first T-1 digits as the input sequence and its last digit
as the label; the last digit equals the first, so the task is to remember x(1) for T-1
steps while ceil(T/2)-1 random digits pass by (the mirrored ones repeat what was seen).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from twinnet.data.arrays import ArrayDataset

N_DIGITS = 10
Encoding = Literal["onehot", "scalar"]


def palindromes(length: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` palindromes at once: int64 digits (n, length)."""
    if length < 2:
        raise ValueError(f"a palindrome sample needs length >= 2 (T-1 inputs and a label), got {length}")
    half = rng.integers(0, N_DIGITS, size=(n, (length + 1) // 2))
    # odd length: the middle digit is not repeated
    tail = half[:, : length // 2][:, ::-1]
    return np.concatenate([half, tail], axis=1)


def generate_palindrome(length: int, rng: np.random.Generator) -> np.ndarray:
    """The digits (length,) of one palindrome: first ceil(length/2) random 0-9, the rest mirrored."""
    return palindromes(length, 1, rng)[0]


def encode(digits: np.ndarray, encoding: Encoding, dtype=np.float32) -> np.ndarray:
    """Digits (N, L) -> one-hot (N, L, 10) or scalar (N, L, 1) floats of ``dtype``."""
    if encoding == "onehot":
        return np.eye(N_DIGITS, dtype=dtype)[digits]
    if encoding == "scalar":
        return digits[..., None].astype(dtype)  # the raw digit value 0..9, as the course feeds it
    raise ValueError(f"encoding must be 'onehot' or 'scalar', got {encoding!r}")


def input_size(encoding: Encoding) -> int:
    """Features per time step of an encoding."""
    return N_DIGITS if encoding == "onehot" else 1


def samples(length: int, n: int, rng: np.random.Generator, encoding: Encoding = "onehot",
            dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """(x (n, length-1, D), y (n,) int64): the first length-1 digits encoded, and the last digit."""
    digits = palindromes(length, n, rng)
    return encode(digits[:, :-1], encoding, dtype), digits[:, -1].copy()


@dataclass(frozen=True)
class Curriculum:
    """Train on short palindromes first: from ``start``, ``step`` longer each time the running train
    accuracy since the last evaluation reaches ``threshold``, up to the target length."""

    start: int = 5
    step: int = 5
    threshold: float = 0.99


class PalindromeDataset:
    """Training data as a ``BatchSource``: every batch a fresh draw from a seeded generator.

    ``length`` may be changed between batches (a curriculum over T does so); batches are
    drawn at the current value. ``__len__`` is a nominal epoch, used only to label the x axis.
    """

    def __init__(self, seq_length: int, encoding: Encoding = "onehot", seed: int = 0, dtype=np.float32,
                 epoch_size: int = 12_800, curriculum: Curriculum | None = None) -> None:
        if seq_length < 2:
            raise ValueError(f"seq_length must be >= 2, got {seq_length}")
        if encoding not in ("onehot", "scalar"):
            raise ValueError(f"encoding must be 'onehot' or 'scalar', got {encoding!r}")
        self.seq_length, self.length = seq_length, seq_length  # target T, and the T batches are drawn at
        self.encoding, self.seed, self.dtype, self.epoch_size = encoding, seed, np.dtype(dtype), epoch_size
        self.curriculum = curriculum
        if curriculum is not None:
            self.length = min(curriculum.start, seq_length)

    # the source's own state, declared to ``fit``: recorded with every evaluation and checkpoint
    def state(self) -> dict:
        return {"length": self.length}

    def load_state(self, state: dict) -> None:
        length = state.get("length")
        if not isinstance(length, int) or not 2 <= length <= self.seq_length:
            raise ValueError(f"a palindrome length in [2, {self.seq_length}], got {length!r}")
        self.length = length

    def update(self, record: dict) -> None:
        """After an evaluation: the curriculum lengthens T once the running train accuracy reaches its threshold."""
        c = self.curriculum
        if c is not None and record["train_acc"] >= c.threshold:
            self.length = min(self.length + c.step, self.seq_length)

    def __len__(self) -> int:
        return self.epoch_size

    @property
    def input_size(self) -> int:
        return input_size(self.encoding)

    def batches(self, batch_len: int, shuffle: bool = True, rng: np.random.Generator | None = None, epoch: int = 0
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Endless fresh (x, y) batches drawn from ``rng`` (``fit`` passes its own generator, seeded by
        its seed and saved in its checkpoints), or without one from a generator seeded by ``seed``.
        ``shuffle`` and ``epoch`` are unused: the data has no order."""
        gen = rng if rng is not None else np.random.default_rng(self.seed)
        while True:
            yield samples(self.length, batch_len, gen, self.encoding, self.dtype)

    def eval_set(self, n: int, seed: int, length: int | None = None, stream: int = 0) -> ArrayDataset:
        """A fixed evaluation set of ``n`` fresh samples at ``length`` (default: the target T), drawn
        from its own generator, independent of the training stream (small T repeat palindromes
        anyway: T=5 has only 1,000 distinct ones). Another ``stream`` gives another independent set."""
        gen = np.random.default_rng([seed, 0x7E57, stream])  # never the stream default_rng(seed) trains on
        return ArrayDataset(*samples(length or self.seq_length, n, gen, self.encoding, self.dtype))
