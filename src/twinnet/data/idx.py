"""IDX files (the MNIST format), gzip-compressed or not, read whole and checked against their header.

Layout, all big-endian: a uint32 magic number ``0x0000TTDD`` (TT the element type, 0x08 for uint8;
DD the number of dimensions), then DD uint32 sizes, then the raw elements. MNIST uses two:
2051 (0x0803) for images (n, rows, cols) and 2049 (0x0801) for labels (n,).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from twinnet import TwinnetError

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
_NDIM = {IMAGES_MAGIC: 3, LABELS_MAGIC: 1}
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class IdxFile:
    """One IDX file, decoded, with the checksums that identify it."""

    path: Path
    magic: int  # IMAGES_MAGIC or LABELS_MAGIC
    array: np.ndarray  # uint8, (n, rows, cols) for images, (n,) for labels
    md5: str  # of the uncompressed content: the same for a raw and a gzipped copy
    file_md5: str  # of the bytes on disk: differs from md5 when the file is gzipped


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _error(path: Path | str, problem: str, fix: str = "re-download it") -> TwinnetError:
    return TwinnetError(f"IDX file {path}: {problem}; {fix}")


def decompress(raw: bytes, path: Path | str) -> bytes:
    """The content of ``raw``: gunzipped if it starts with the gzip magic bytes, else ``raw`` itself."""
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; a cut-off stream an EOFError
        raise _error(path, f"corrupt gzip data ({exc})") from None


def parse_idx(content: bytes, path: Path | str) -> tuple[int, np.ndarray]:
    """Magic number and uint8 array of uncompressed IDX ``content``; the length must match the header exactly."""
    if len(content) < 4:
        raise _error(path, f"only {len(content)} bytes, too short for an IDX header")
    magic = int.from_bytes(content[:4], "big")
    if magic not in _NDIM:
        raise _error(
            path,
            f"bad magic number {magic} (0x{magic:08x}), expected {IMAGES_MAGIC} (images) or {LABELS_MAGIC} (labels)",
            "is it an MNIST-format file? re-download it",
        )
    ndim = _NDIM[magic]
    header = 4 + 4 * ndim
    if len(content) < header:
        raise _error(path, f"header cut short ({len(content)} of {header} bytes)")
    shape = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(shape)  # Python's integers: a crafted header cannot overflow it back to a fit
    what = f"{shape[0]} images of {shape[1]}x{shape[2]}" if magic == IMAGES_MAGIC else f"{shape[0]} labels"
    if len(content) < expected:
        raise _error(path, f"truncated: the header declares {what} ({expected} bytes) but there are {len(content)}")
    if len(content) > expected:
        raise _error(path, f"{len(content) - expected} trailing bytes after the {what} the header declares")
    # copy: a writable array that owns its memory, like the ones read back from the cache
    array = np.frombuffer(content, dtype=np.uint8, offset=header).reshape(shape).copy()
    return magic, array


def read_idx(path: Path | str) -> IdxFile:
    """Read and check one IDX file; gzip is detected from the magic bytes, not from the name."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _error(path, f"cannot be read ({exc.strerror})", "check the path and its permissions") from None
    content = decompress(raw, path)
    magic, array = parse_idx(content, path)
    md5 = md5_hex(content)
    return IdxFile(path, magic, array, md5, md5 if content is raw else md5_hex(raw))
