"""MNIST and Fashion-MNIST from their official IDX files: found, checked by checksum, cached as one .npz.

Pixels stay uint8 here; the experiment normalises them (``normalize``, ``MNIST_MEAN``, ``MNIST_STD``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from twinnet import TwinnetError
from twinnet.data import idx
from twinnet.data.cache import read_cache, write_cache
from twinnet.data.arrays import ArrayDataset, Split
from twinnet.data.augment import normalize as normalize_pixels

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # of the MNIST train pixels on [0, 1]

# The official names, shared by MNIST and Fashion-MNIST; each may also end in .gz.
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

# md5 of the uncompressed official files: a copy passes whatever its compression.
OFFICIAL_MD5: dict[str, dict[str, str]] = {
    "MNIST": dict(zip(FILES, (
        "6bbc9ace898e44ae57da46a324031adb", "a25bea736e30d166cdddb491f175f624",
        "2646ac647ad5339dbf082846283269ea", "27ae3e4e09519cfbb04c329615203637",
    ))),  # fmt: skip
    "Fashion-MNIST": {},  # only the checksums of its .gz downloads are published
}
# md5 of the official .gz downloads: accepted for a file still in that exact compressed form.
OFFICIAL_GZ_MD5: dict[str, dict[str, str]] = {
    "MNIST": dict(zip(FILES, (
        "f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
        "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c",
    ))),  # fmt: skip
    "Fashion-MNIST": dict(zip(FILES, (
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
        "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310",
    ))),  # fmt: skip
}

_CACHE_FORMAT = 1  # bump when the cached arrays change meaning
_CACHE_ARRAYS = ("train_x", "train_y", "test_x", "test_y", "md5", "file_md5", "key")


@dataclass(frozen=True)
class _Dataset:
    name: str
    subdirs: tuple[str, ...]  # looked for inside the data directory before the directory itself
    classes: tuple[str, ...]
    loader: str  # named in errors that point the user to the other dataset


_MNIST = _Dataset("MNIST", ("mnist",), MNIST_CLASSES, "load_mnist")
_FASHION = _Dataset("Fashion-MNIST", ("fashion-mnist", "fashion_mnist"), FASHION_MNIST_CLASSES, "load_fashion_mnist")


def load_mnist(
    data_dir: str | Path | None = None, *, verify: bool = True, cache_dir: str | Path | None = None
) -> Split:
    """MNIST as uint8 images (N, 1, 28, 28) and int64 labels, from ``data_dir`` or $TWINNET_DATA_DIR."""
    return _load(_MNIST, data_dir, verify, cache_dir)


def load_fashion_mnist(
    data_dir: str | Path | None = None, *, verify: bool = True, cache_dir: str | Path | None = None
) -> Split:
    """Fashion-MNIST, like ``load_mnist``; looked for in ``<dir>/fashion-mnist`` before ``<dir>``."""
    return _load(_FASHION, data_dir, verify, cache_dir)


def normalize(
    x_uint8: np.ndarray, mean: float = MNIST_MEAN, std: float = MNIST_STD, dtype: type = np.float32
) -> np.ndarray:
    """``(x / 255 - mean) / std`` as a new float array of ``dtype`` (MNIST's statistics by default)."""
    return normalize_pixels(x_uint8, mean, std, dtype)


def _load(ds: _Dataset, data_dir: str | Path | None, verify: bool, cache_dir: str | Path | None) -> Split:
    files = _find_files(ds, data_dir)
    key = _cache_key(ds, files)
    cache = _cache_root(cache_dir) / f"{ds.name.lower()}-{key[:16]}.npz"
    arrays = read_cache(cache, key, _CACHE_ARRAYS, _well_formed)
    if arrays is None:
        arrays = _read_sources(files)
        arrays["key"] = np.array(key)
    if verify:  # from the md5s stored in the cache too, so a cached unverified copy is still caught
        _check_md5(ds, files, arrays["md5"], arrays["file_md5"])
    if not cache.is_file():
        write_cache(cache, arrays, "the IDX files")
    as_set = lambda x, y: ArrayDataset(x[:, None], y)  # noqa: E731  (N, 28, 28) -> (N, 1, 28, 28)
    source = f"{ds.name} IDX files in {files[0].parent}" + (", official checksums verified" if verify else
                                                             ", checksums not verified")
    return Split(as_set(arrays["train_x"], arrays["train_y"]), as_set(arrays["test_x"], arrays["test_y"]), ds.classes,
                 source)


def _find_files(ds: _Dataset, data_dir: str | Path | None) -> list[Path]:
    expected = f"{', '.join(FILES)} (each with or without .gz)"
    if data_dir is None:
        data_dir = os.environ.get("TWINNET_DATA_DIR") or None
        if data_dir is None:
            raise TwinnetError(
                f"no {ds.name} data directory given: pass --data-dir (data_dir= in Python) or set TWINNET_DATA_DIR "
                f"to a directory holding {expected}"
            )
    base = Path(data_dir).expanduser()
    if base.is_file():
        raise TwinnetError(f"{base} is a file; {ds.name} is read from the folder holding its four files (or the "
                           f"folder above it): pass {base.parent}")
    tried = [base / sub for sub in ds.subdirs] + [base]
    for d in tried:
        found = [next((p for p in (d / f, d / f"{f}.gz") if p.is_file()), None) for f in FILES]
        if any(found):
            missing = [f for f, p in zip(FILES, found) if p is None]
            if missing:
                raise TwinnetError(
                    f"{ds.name} directory {d} lacks {', '.join(missing)} (with or without .gz); "
                    "put all four official files there"
                )
            return found
    raise TwinnetError(
        f"{ds.name} files not found; looked in {', '.join(map(str, tried))} for {expected}; "
        "pass the data directory or set TWINNET_DATA_DIR"
    )


def _read_sources(files: list[Path]) -> dict[str, np.ndarray]:
    """Decode the four files and check they make two image/label pairs of 28x28 digits."""
    f = [idx.read_idx(p) for p in files]
    out: dict[str, np.ndarray] = {}
    for split, images, labels in (("train", f[0], f[1]), ("test", f[2], f[3])):
        for got, want, kind in ((images, idx.IMAGES_MAGIC, "images"), (labels, idx.LABELS_MAGIC, "labels")):
            if got.magic != want:
                raise TwinnetError(
                    f"IDX file {got.path} holds {'labels' if kind == 'images' else 'images'} "
                    f"(magic {got.magic}), not {kind}; the files are misnamed: rename them or re-download"
                )
        if images.array.shape[1:] != (28, 28):
            raise TwinnetError(
                f"IDX file {images.path} holds {images.array.shape[1]}x{images.array.shape[2]} images, "
                "not 28x28; use the official files"
            )
        if len(images.array) != len(labels.array):
            raise TwinnetError(
                f"{images.path} has {len(images.array)} images but {labels.path} has {len(labels.array)} labels; "
                "the files come from different copies: re-download both"
            )
        if len(labels.array) and labels.array.max() > 9:
            raise TwinnetError(f"IDX file {labels.path}: label {labels.array.max()} outside 0..9; re-download it")
        out[f"{split}_x"], out[f"{split}_y"] = images.array, labels.array.astype(np.int64)
    out["md5"] = np.array([x.md5 for x in f])
    out["file_md5"] = np.array([x.file_md5 for x in f])
    return out


def _identify(md5: str, file_md5: str) -> str | None:
    """'<dataset>'s <file>' if either checksum is one of an official file, else None."""
    for table, value in ((OFFICIAL_MD5, md5), (OFFICIAL_GZ_MD5, file_md5)):
        for dataset, sums in table.items():
            for name, known in sums.items():
                if known == value:
                    return f"{dataset}'s {name}"
    return None


def _check_md5(ds: _Dataset, files: list[Path], md5s: np.ndarray, file_md5s: np.ndarray) -> None:
    for path, name, md5, file_md5 in zip(files, FILES, map(str, md5s), map(str, file_md5s)):
        want, want_gz = OFFICIAL_MD5[ds.name].get(name), OFFICIAL_GZ_MD5[ds.name].get(name)
        if md5 == want or file_md5 == want_gz:
            continue
        other = _identify(md5, file_md5)
        if other is not None and not other.startswith(f"{ds.name}'s"):
            loader = next(d.loader for d in (_MNIST, _FASHION) if other.startswith(f"{d.name}'s"))
            problem = f"is {other}, not {ds.name}'s; load it with {loader}, or point at a {ds.name} directory"
        elif other is not None:
            problem = f"is {other}, not {name}; the files are misnamed: rename them or re-download"
        elif want is not None:
            problem = (
                f"is not the official {ds.name} {name} (md5 of its content {md5}, expected {want}); "
                "re-download it, or use this copy knowingly with --set verify=false (verify=False from Python)"
            )
        else:
            problem = (
                f"matches no official {ds.name} checksum (only its .gz downloads have published ones: "
                f"expected md5 {want_gz} of the .gz file, got {file_md5}); use the original .gz download, "
                "or use this copy knowingly with --set verify=false (verify=False from Python)"
            )
        raise TwinnetError(f"checksum: {path} {problem}")


def _cache_root(cache_dir: str | Path | None) -> Path:
    if cache_dir is None:
        cache_dir = os.environ.get("TWINNET_CACHE_DIR") or Path.home() / ".cache" / "twinnet"
    return Path(cache_dir).expanduser()


def _cache_key(ds: _Dataset, files: list[Path]) -> str:
    """Names the sources by path, size and mtime: replacing or touching a file invalidates the cache."""
    stats = [(str(p.resolve()), st.st_size, st.st_mtime_ns) for p, st in ((p, p.stat()) for p in files)]
    return hashlib.sha256(json.dumps([ds.name, _CACHE_FORMAT, stats]).encode()).hexdigest()



def _well_formed(a: dict[str, np.ndarray]) -> bool:
    pairs = ((a["train_x"], a["train_y"]), (a["test_x"], a["test_y"]))
    sets_ok = all(
        x.dtype == np.uint8 and x.ndim == 3 and x.shape[1:] == (28, 28)
        and y.dtype == np.int64 and y.shape == x.shape[:1]
        for x, y in pairs
    )
    return sets_ok and a["md5"].shape == a["file_md5"].shape == (len(FILES),)


