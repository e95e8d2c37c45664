"""CIFAR-10 from the official python archive, its extracted batches, or an image-folder tree or archive
(read by ``twinnet.data.image_tree``).

Decoded once into uint8 images (N, 3, 32, 32) and cached as one .npz; the returned split says which
source it came from and whether that source is lossy (JPEG), so figures can say "JPEG copy" beside them.

The official batches are Python 2 pickles. They are read with an unpickler that resolves only the three
numpy names an ndarray needs, so a tampered or unverified file cannot run code; with ``verify`` the md5s
are also checked before any byte is unpickled.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import pickle
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from twinnet import TwinnetError
from twinnet.data.cache import read_cache, write_cache
from twinnet.data.arrays import ArrayDataset, Split
from twinnet.data.image_tree import SPLITS, archive_members, list_folder, read_images

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Of the lossless train pixels on [0, 1]; the shared JPEG copy's differ slightly: use channel_stats(train.x).
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"  # a module constant so tests can redirect it
ARCHIVE_NAME, BATCHES_DIR = "cifar-10-python.tar.gz", "cifar-10-batches-py"
TRAIN_BATCHES, TEST_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",)
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
BATCH_MD5 = {  # published beside the archive
    "data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e",
}  # fmt: skip
SUBDIRS = ("cifar10", "cifar-10")  # looked in before the data directory itself
IMAGE_ARCHIVES = (".tar.gz", ".tgz", ".tar", ".zip")

_CACHE_FORMAT = 1  # bump when the cached arrays change meaning
_CACHE_ARRAYS = ("train_x", "train_y", "test_x", "test_y", "key", "source", "lossy", "md5", "archive_md5")
_WANTED = (
    f"{ARCHIVE_NAME}, {BATCHES_DIR}/, or train/<class>/ and test/<class>/ images "
    f"(a folder, or an archive {'/'.join(IMAGE_ARCHIVES)})"
)


@dataclass(frozen=True)
class CifarSplit(Split):
    """A ``Split`` whose ``source`` says whether it is lossy; ``lossy`` is True for JPEG pixels."""

    lossy: bool = False


@dataclass(frozen=True)
class _Source:
    kind: str  # "archive", "batches" (the official python formats), "folder" or "image-archive"
    path: Path


def load_cifar10(
    data_dir: str | Path | None = None,
    *,
    verify: bool = True,
    cache_dir: str | Path | None = None,
    download: bool = False,
) -> CifarSplit:
    """CIFAR-10 as uint8 images (N, 3, 32, 32) and int64 labels, from ``data_dir`` or $TWINNET_DATA_DIR.

    ``data_dir`` may also be the path of an archive. ``verify`` checks the official files' md5s (image
    folders have none); ``download`` fetches the official archive into ``<data_dir>/cifar10`` if nothing is found.
    """
    src = _find_source(data_dir, download)
    listing = list_folder(src.path) if src.kind == "folder" else None
    key = _cache_key(src, listing)
    cache = _cache_root(cache_dir) / f"cifar10-{key[:16]}.npz"
    arrays = read_cache(cache, key, _CACHE_ARRAYS, _well_formed)
    if arrays is None:
        arrays = _read_source(src, listing, verify)  # verifies before it unpickles
        arrays["key"] = np.array(key)
        write_cache(cache, arrays, "CIFAR-10")
    elif verify:  # from the md5s stored in the cache, so a cached unverified copy is still caught
        _check_md5(src, arrays["md5"], str(arrays["archive_md5"]))
    return CifarSplit(
        ArrayDataset(arrays["train_x"], arrays["train_y"]),
        ArrayDataset(arrays["test_x"], arrays["test_y"]),
        CIFAR10_CLASSES,
        source=str(arrays["source"]),
        lossy=bool(arrays["lossy"]),
    )


def channel_stats(x_uint8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (population) of uint8 images (N, C, H, W), on [0, 1], exact from histograms."""
    x = np.asarray(x_uint8)
    if x.dtype != np.uint8 or x.ndim != 4:
        raise TypeError(f"channel_stats expects uint8 images (N, C, H, W), got {x.dtype} {x.shape}")
    counts = np.zeros((x.shape[1], 256), np.int64)
    for start in range(0, len(x), 4096):  # chunks bound bincount's intp copy to ~32 MB per channel
        for c in range(x.shape[1]):
            counts[c] += np.bincount(x[start : start + 4096, c].ravel(), minlength=256)
    values, n = np.arange(256) / 255, counts.sum(1)
    mean = counts @ values / n
    std = np.sqrt((counts * (values - mean[:, None]) ** 2).sum(1) / n)
    return mean, std


# ---- finding the data -------------------------------------------------------------------------------


def _find_source(data_dir: str | Path | None, download: bool) -> _Source:
    if data_dir is None:
        data_dir = os.environ.get("TWINNET_DATA_DIR") or None
        if data_dir is None:
            raise TwinnetError(
                "no CIFAR-10 data directory given: pass --data-dir or set TWINNET_DATA_DIR to a directory "
                f"holding {_WANTED}"
            )
    base = Path(data_dir).expanduser()
    if base.is_file() and base.name != ARCHIVE_NAME and not _is_archive(base):
        raise TwinnetError(f"the data directory {base} is a file, and no archive (.tar.gz, .tgz, .tar or .zip); give "
                           f"the folder holding {_WANTED}, or such an archive itself")
    if base.is_file():
        return _Source("archive" if base.name == ARCHIVE_NAME else "image-archive", base)
    dirs = [base / sub for sub in SUBDIRS] + [base]
    for d in dirs:  # lossless sources first, wherever they are
        if (d / ARCHIVE_NAME).is_file():
            return _Source("archive", d / ARCHIVE_NAME)
    for d in dirs:
        if (d / BATCHES_DIR).is_dir():
            return _Source("batches", d / BATCHES_DIR)
        if any((d / name).is_file() for name in TRAIN_BATCHES + TEST_BATCHES):  # pointed at the batches folder itself
            return _Source("batches", d)
    for d in dirs:
        if (root := _find_tree(d)) is not None:
            return _Source("folder", root)
    for d in dirs:
        found = sorted(p for p in d.glob("*") if _is_archive(p)) if d.is_dir() else []
        if len(found) > 1:
            raise TwinnetError(
                f"{d} holds several archives ({', '.join(p.name for p in found)}); "
                "pass the one to use as the data directory"
            )
        if found:
            return _Source("image-archive", found[0])
    if download:
        return _Source("archive", _download(base / SUBDIRS[0]))
    # one split of an image tree, without the other: said first, as the rest would send the user elsewhere
    half = next(([d, s] for d in dirs for s in SPLITS if (d / s).is_dir()), None)
    if half is not None:
        other = next(s for s in SPLITS if s != half[1])
        half = (f"{half[0]} holds {half[1]}/ but no {other}/, and an image tree needs both (a folder per class in "
                "each); ")
    raise TwinnetError(
        f"CIFAR-10 not found; {half or ''}looked in {', '.join(map(str, dirs))} for {_WANTED}; pass --data-dir (or "
        f"set TWINNET_DATA_DIR) to where it is; the official archive is {CIFAR10_URL} (from Python, "
        "load_cifar10(download=True) fetches it)"
    )


def _is_archive(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(IMAGE_ARCHIVES)


def _find_tree(d: Path) -> Path | None:
    """``d`` or its one subfolder that holds both train/ and test/ folders, else None."""
    has = lambda r: all((r / s).is_dir() for s in SPLITS)  # noqa: E731
    if has(d):
        return d
    roots = sorted(c for c in d.iterdir() if c.is_dir() and not c.name.startswith(".") and has(c)) if d.is_dir() else []
    if len(roots) > 1:
        names = ", ".join(r.name for r in roots)
        raise TwinnetError(f"{d} holds several train/test trees ({names}); pass one as the data directory")
    return roots[0] if roots else None


def _download(dest_dir: Path) -> Path:
    """The official archive, fetched to a temporary file, md5-checked, then renamed: never half a file."""
    from tqdm import tqdm

    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=f".{ARCHIVE_NAME}.", suffix=".part")
    md5, got = hashlib.md5(usedforsecurity=False), 0
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(CIFAR10_URL, timeout=60) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {ARCHIVE_NAME}") as bar:
                while chunk := resp.read(1 << 20):
                    f.write(chunk)
                    md5.update(chunk)
                    bar.update(len(chunk))
                    got += len(chunk)
            f.flush()
            os.fsync(f.fileno())
        if total is not None and got != total:
            raise TwinnetError(f"download of {CIFAR10_URL} cut short ({got} of {total} bytes); try again")
        if md5.hexdigest() != ARCHIVE_MD5:
            raise TwinnetError(
                f"download of {CIFAR10_URL} is not the official archive "
                f"(md5 {md5.hexdigest()}, expected {ARCHIVE_MD5}); try again"
            )
        os.replace(tmp, dest_dir / ARCHIVE_NAME)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise TwinnetError(
            f"cannot download {CIFAR10_URL} ({exc}); fetch it by hand into {dest_dir}, or pass --data-dir to a copy"
        ) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest_dir / ARCHIVE_NAME


# ---- reading it -------------------------------------------------------------------------------------


def _read_source(src: _Source, listing: list[tuple[str, os.stat_result]] | None, verify: bool) -> dict[str, np.ndarray]:
    if src.kind in ("archive", "batches"):
        return _read_python(src, verify)
    if src.kind == "folder":
        members = [(name, src.path / name) for name, _ in listing]
    else:
        members = list(archive_members(src.path))
    hint = f" (it holds {BATCHES_DIR}/: name it {ARCHIVE_NAME})" if any(BATCHES_DIR in n for n, _ in members) else ""
    x, y, n_train, formats = read_images(members, src.path, CIFAR10_CLASSES, "CIFAR-10", (32, 32), hint)
    lossy = "JPEG" in formats
    kind = "image folder" if src.kind == "folder" else "image archive"
    source = f"CIFAR-10 {kind} {src.path} ({'/'.join(sorted(formats))}{', lossy' if lossy else ''})"
    return dict(
        train_x=x[:n_train], train_y=y[:n_train], test_x=x[n_train:], test_y=y[n_train:],
        source=np.array(source), lossy=np.array(lossy), md5=np.array([], dtype=str), archive_md5=np.array(""),
    )  # fmt: skip


def _read_python(src: _Source, verify: bool) -> dict[str, np.ndarray]:
    names = TRAIN_BATCHES + TEST_BATCHES
    if src.kind == "archive":
        raw = {}
        for member, data in archive_members(src.path):
            if (base := member.rsplit("/", 1)[-1]) in names and base not in raw:
                raw[base] = data
        where = {n: f"{src.path} member {n}" for n in names}
        archive_md5 = _file_md5(src.path)
    else:
        raw = {n: (src.path / n).read_bytes() for n in names if (src.path / n).is_file()}
        where, archive_md5 = {n: str(src.path / n) for n in names}, ""
    if missing := [n for n in names if n not in raw]:
        kind = "archive" if src.kind == "archive" else "batches folder"
        raise TwinnetError(
            f"CIFAR-10 {kind} {src.path} lacks {', '.join(missing)}; re-download or re-extract the official archive"
        )
    md5 = np.array([hashlib.md5(raw[n], usedforsecurity=False).hexdigest() for n in names])
    if verify:
        _check_md5(src, md5, archive_md5)
    batches = {n: _unpickle_batch(raw.pop(n), where[n]) for n in names}
    out: dict[str, np.ndarray] = {}
    for split, group in (("train", TRAIN_BATCHES), ("test", TEST_BATCHES)):
        out[f"{split}_x"] = np.concatenate([batches[n][0] for n in group])
        out[f"{split}_y"] = np.concatenate([batches[n][1] for n in group])
    what = "official python archive" if src.kind == "archive" else "official python batches"
    out.update(source=np.array(f"CIFAR-10 {what} {src.path}"), lossy=np.array(False), md5=md5)
    out["archive_md5"] = np.array(archive_md5)
    return out


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only what a pickled uint8 ndarray needs, so no pickle can call anything else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): np.empty(0).__reduce__()[0],  # numpy 1's name, as Python 2 wrote it
        ("numpy._core.multiarray", "_reconstruct"): np.empty(0).__reduce__()[0],  # numpy 2's
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refuses to load {module}.{name}")
        return self._ALLOWED[module, name]


def _unpickle_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(x (n, 3, 32, 32) uint8, y (n,) int64) of one official batch: a dict with b"data" (n, 3072) and b"labels"."""
    problem = None
    try:
        d = _NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001  (garbage makes the unpickler raise almost any type)
        d, problem = None, f"not a readable pickle ({type(exc).__name__}: {exc})"
    x, labels = (d.get(b"data"), d.get(b"labels")) if isinstance(d, dict) else (None, None)
    rows_ok = isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 2 and x.shape[1] == 3072
    if problem is None and not rows_ok:
        problem = "no b'data' array of uint8 rows of 3072 pixels"
    if problem is None:
        try:
            raw_y = np.asarray(labels if labels is not None else [])
            with np.errstate(invalid="ignore"):  # NaN casts to garbage, refused just below
                y = raw_y.astype(np.int64)  # raises for strings and objects that are not numbers
            if raw_y.size and not (raw_y.dtype.kind in "iub" or np.array_equal(raw_y, y)):
                raise ValueError("fractional")  # 1.7 would be truncated to 1 without a word
        except (TypeError, ValueError, OverflowError):
            y, problem = None, "labels that are not integers"
    if problem is None:
        if y.shape != (len(x),):
            problem = f"{len(x)} images but {y.size} labels"
        elif len(y) and (y.min() < 0 or y.max() > 9):
            problem = f"label {y.max() if y.max() > 9 else y.min()} outside 0..9"
    if problem is not None:
        raise TwinnetError(f"CIFAR-10 batch {where}: {problem}; re-download it")
    return x.reshape(-1, 3, 32, 32), y  # channel-major rows: 1024 red, 1024 green, 1024 blue, each row-major


def _check_md5(src: _Source, md5: np.ndarray, archive_md5: str) -> None:
    """Official files only: the archive's md5, or else every batch's, must be the published one."""
    if src.kind not in ("archive", "batches"):
        return  # an image folder has no published checksums
    names = TRAIN_BATCHES + TEST_BATCHES
    md5 = [str(m) for m in md5] if len(md5) == len(names) else [""] * len(names)
    bad = next(((n, m) for n, m in zip(names, md5) if m != BATCH_MD5[n]), None)
    if archive_md5 == ARCHIVE_MD5 or bad is None:
        return
    if src.kind == "archive":
        problem = f"is not the official CIFAR-10 archive (md5 {archive_md5}, expected {ARCHIVE_MD5})"
        path = src.path
    else:
        problem = f"is not the official CIFAR-10 {bad[0]} (md5 {bad[1]}, expected {BATCH_MD5[bad[0]]})"
        path = src.path / bad[0]
    raise TwinnetError(f"checksum: {path} {problem}; re-download it, or use this copy knowingly with "
                       "--set verify=false (verify=False from Python)")


def _file_md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


# ---- the cache --------------------------------------------------------------------------------------


def _cache_root(cache_dir: str | Path | None) -> Path:
    if cache_dir is None:
        cache_dir = os.environ.get("TWINNET_CACHE_DIR") or Path.home() / ".cache" / "twinnet"
    return Path(cache_dir).expanduser()


def _cache_key(src: _Source, listing: list[tuple[str, os.stat_result]] | None) -> str:
    """Names the sources by path, size and mtime: replacing or touching any file invalidates the cache."""
    if listing is not None:
        stats = [(name, st.st_size, st.st_mtime_ns) for name, st in listing]
    else:
        files = [src.path] if src.path.is_file() else [src.path / n for n in TRAIN_BATCHES + TEST_BATCHES]
        stats = [(p.name, st.st_size, st.st_mtime_ns) for p, st in ((p, p.stat()) for p in files if p.is_file())]
    return hashlib.sha256(json.dumps([src.kind, str(src.path.resolve()), _CACHE_FORMAT, stats]).encode()).hexdigest()



def _well_formed(a: dict[str, np.ndarray]) -> bool:
    return all(
        x.dtype == np.uint8 and x.shape[1:] == (3, 32, 32) and y.dtype == np.int64 and y.shape == x.shape[:1]
        for x, y in ((a["train_x"], a["train_y"]), (a["test_x"], a["test_y"]))
    )


