"""Labelled images kept as <split>/<class>/<image> files, in a folder or in a zip or (gzipped) tar archive.

How the JPEG copy of CIFAR-10 is stored, and any tree like it. Every member is read and checked, so
a damaged archive, a stray file or an image of the wrong size is one clear error that names it.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import re
import sys
import tarfile
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from twinnet import TwinnetError, hardware

SPLITS = ("train", "test")


def archive_members(path: Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every file in a zip, or a plain or gzipped tar, in archive order."""
    try:
        if path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as z:
                for info in z.infolist():
                    if not info.is_dir():
                        yield info.filename, z.read(info)  # checks the member's CRC
        else:
            yield from _tar_members(path)
    except (OSError, EOFError, zlib.error, tarfile.TarError, zipfile.BadZipFile) as exc:
        raise TwinnetError(f"archive {path} is corrupt or truncated ({exc}); re-download it") from None


def _tar_members(path: Path) -> Iterator[tuple[str, bytes]]:
    """Members of a plain or gzipped tar, which must read cleanly to its end.

    tarfile takes a damaged header for the end of the archive, and never checks the gzip CRC, so the
    rest after the last member is read here (through gzip, which checks it) and must be zeros.
    """
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        with gzip.GzipFile(fileobj=raw) if gzipped else contextlib.nullcontext(raw) as f:
            with tarfile.open(fileobj=f, mode="r:") as tf:  # read in order: gzip never seeks back
                last = "its start"
                for m in tf:
                    last = m.name
                    if m.isfile():
                        yield m.name, tf.extractfile(m).read()
                f.seek(tf.offset)
                if f.read().strip(b"\0"):
                    raise TwinnetError(f"archive {path} is corrupt after {last}; re-download it")


def list_folder(root: Path) -> list[tuple[str, os.stat_result]]:
    """Every file under root/train and root/test as (path relative to root, stat), hidden ones left out."""
    out = []
    for split in SPLITS:
        for dirpath, dirnames, filenames in os.walk(root / split):
            dirnames[:] = [n for n in dirnames if not n.startswith(".")]
            rel = Path(dirpath).relative_to(root).as_posix()
            out += [(f"{rel}/{f}", os.stat(Path(dirpath, f))) for f in filenames if not f.startswith(".")]
    return sorted(out)


def _natural(name: str) -> list:
    """Sort key that puts 2.png before 10.png; str and int parts alternate, so keys always compare."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def index_tree(names: list[str], where: Path, classes: Sequence[str], dataset: str,
               hint: str = "") -> list[tuple[int, int, str, int]]:
    """(split index, label, file name, position in names) of each image of a train/<class>/ test/<class>/ tree.

    The tree may sit under one prefix (``cifar10-jpeg/train/...``); hidden files and __MACOSX are ignored.
    Its class folders must be exactly ``classes``; ``hint`` ends the error when no tree is found.
    """
    parts = [n.strip("/").removeprefix("./").split("/") for n in names]
    keep = [i for i, p in enumerate(parts) if not any(q.startswith(".") or q == "__MACOSX" for q in p)]
    level = {i: next((k for k, q in enumerate(parts[i][:-1]) if q in SPLITS), None) for i in keep}
    prefixes = sorted({"/".join(parts[i][: level[i]]) for i in keep if level[i] is not None})
    if not prefixes:
        raise TwinnetError(f"{where} holds no train/<class>/ or test/<class>/ images{hint}; use a {dataset} image tree")
    if len(prefixes) > 1:
        raise TwinnetError(f"{where} holds several train/test trees ({', '.join(p + '/' for p in prefixes)}); keep one")
    tree = f"{prefixes[0]}/" if prefixes[0] else ""
    out, seen = [], {s: set() for s in SPLITS}
    for i in keep:
        p, k = parts[i], level[i]
        if k is None or "/".join(p[:k]) != prefixes[0]:
            continue  # beside the tree, e.g. a README
        if len(p) - k != 3:
            raise TwinnetError(f"{where}: unexpected {names[i]}, expected {tree}{p[k]}/<class>/<image> only")
        if p[k + 1] not in classes:
            folder = "/".join(p[: k + 2])
            raise TwinnetError(
                f"{where}: unexpected class folder {folder}/; the class folders must be exactly the "
                f"{_count(len(classes))} {dataset} classes ({', '.join(classes)})"
            )
        out.append((SPLITS.index(p[k]), classes.index(p[k + 1]), p[-1], i))
        seen[p[k]].add(p[k + 1])
    for split, found in seen.items():
        if missing := [c for c in classes if c not in found]:
            raise TwinnetError(
                f"{where}: {split}/ has no images of {', '.join(missing)}; {dataset} needs all "
                f"{_count(len(classes))} classes"
            )
    return sorted(out, key=lambda t: (t[0], t[1], _natural(t[2])))  # deterministic: split, class, then name


def _count(n: int) -> str:
    return {2: "two", 10: "ten", 100: "hundred"}.get(n, str(n))


DECODE_NOTICE_AT = 5000  # images: decoding fewer is quick enough to pass without a word


def read_images(members: list[tuple[str, Path | bytes]], where: Path, classes: Sequence[str], dataset: str,
                size: tuple[int, int], hint: str = "") -> tuple[np.ndarray, np.ndarray, int, set[str]]:
    """Decode a tree's images: uint8 x (N, 3, H, W) train rows first, int64 labels y (N,), the number of
    training images, and the formats met (e.g. {"JPEG"}). ``members`` are (name, file path or bytes)."""
    from PIL import Image  # needed only for image sources

    index = index_tree([name for name, _ in members], where, classes, dataset, hint)
    if len(index) >= DECODE_NOTICE_AT:  # tens of seconds for CIFAR-10: say what is happening
        print(f"twinnet: decoding {len(index):,} {dataset} images from {where} (done once; the arrays are cached)",
              file=sys.stderr, flush=True)
    x = np.empty((len(index), 3, size[0], size[1]), np.uint8)
    in_folder = bool(members) and isinstance(members[0][1], Path)
    describe = (lambda n: str(where / n)) if in_folder else (lambda n: f"{where} member {n}")

    def decode(lo: int, hi: int) -> set[str]:
        formats = set()
        for row in range(lo, hi):
            name, payload = members[index[row][3]]
            try:
                with Image.open(payload if isinstance(payload, Path) else io.BytesIO(payload)) as im:
                    if im.size != (size[1], size[0]):
                        raise TwinnetError(f"image {describe(name)} is {im.size[0]}x{im.size[1]}, not "
                                           f"{size[1]}x{size[0]}; {dataset} images are {size[1]}x{size[0]}")
                    formats.add(im.format)
                    x[row] = np.asarray(im if im.mode == "RGB" else im.convert("RGB")).transpose(2, 0, 1)
            # UnidentifiedImageError and truncation are OSErrors; a header claiming a huge size: DecompressionBombError
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                raise TwinnetError(f"image {describe(name)} cannot be decoded ({exc}); replace it") from None
        return formats

    workers = min(8, hardware.cores())  # Pillow's decoders release the GIL; a container's CPU quota honoured
    bounds = np.linspace(0, len(index), 4 * workers + 1).astype(int)
    with ThreadPoolExecutor(workers) as pool:
        formats = set().union(*pool.map(decode, bounds[:-1], bounds[1:]))
    n_train = sum(t[0] == 0 for t in index)  # sorted by split: train rows come first
    return x, np.array([t[1] for t in index], dtype=np.int64), n_train, formats
