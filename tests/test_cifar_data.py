import hashlib
import http.server
import io
import os
import pickle
import struct
import tarfile
import threading
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from twinnet import TwinnetError
from twinnet.data import cifar
from twinnet.data.cifar import CIFAR10_CLASSES, CifarSplit, channel_stats, load_cifar10

REAL_JPEG = Path("/work/shared/data/cifar10/cifar10-jpeg-q75.tar.gz")
PER_BATCH, N_TEST = 3, 4  # five train batches of 3 images, one test batch of 4
BATCHES = cifar.TRAIN_BATCHES + cifar.TEST_BATCHES


# ---- the official python format ----------------------------------------------------------------------


class Py2Pickler(pickle._Pickler):
    """Writes bytes and str as Python 2 str and numpy under its numpy-1 module name, as the official batches are."""

    def save_str(self, obj):
        self.save_bytes(obj.encode("latin1"))

    def save_bytes(self, obj):
        n = len(obj)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)) + obj)
        self.memoize(obj)

    dispatch = {**pickle._Pickler.dispatch, bytes: save_bytes, str: save_str}


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def fake_batches(seed: int = 0) -> dict[str, dict]:
    rng = np.random.default_rng(seed)
    out = {}
    for i, name in enumerate(BATCHES):
        n = N_TEST if name == "test_batch" else PER_BATCH
        out[name] = {
            b"batch_label": f"{name} of 5".encode(),
            b"labels": [int(v) for v in (np.arange(n) + 3 * i) % 10],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}_{k}.png".encode() for k in range(n)],
        }
    return out


def write_batches(d: Path, batches: dict[str, dict] | None = None) -> dict[str, dict]:
    batches = fake_batches() if batches is None else batches
    d.mkdir(parents=True, exist_ok=True)
    for name, content in batches.items():
        (d / name).write_bytes(py2_pickle(content))
    (d / "batches.meta").write_bytes(py2_pickle({b"label_names": [c.encode() for c in CIFAR10_CLASSES]}))
    return batches


def write_archive(path: Path, batches: dict[str, dict] | None = None) -> dict[str, dict]:
    src = path.parent / "src"
    batches = write_batches(src / cifar.BATCHES_DIR, batches)
    with tarfile.open(path, "w:gz") as tf:
        tf.add(src / cifar.BATCHES_DIR, arcname=cifar.BATCHES_DIR)
    return batches


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def official(monkeypatch, batches: dict[str, dict] | None = None) -> None:
    """Make the fake batches the 'published' ones."""
    batches = fake_batches() if batches is None else batches
    monkeypatch.setattr(cifar, "BATCH_MD5", {n: md5(py2_pickle(b)) for n, b in batches.items()})


def expected_python(batches: dict[str, dict]):
    tr = [batches[n] for n in cifar.TRAIN_BATCHES]
    x = lambda bs: np.concatenate([b[b"data"] for b in bs])  # noqa: E731
    y = lambda bs: np.concatenate([b[b"labels"] for b in bs])  # noqa: E731
    return x(tr), y(tr), x([batches["test_batch"]]), y([batches["test_batch"]])


def one_line_naming(exc: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


def no_cache(cache: Path) -> bool:
    return not cache.exists() or not any(cache.iterdir())


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.delenv("TWINNET_DATA_DIR", raising=False)
    monkeypatch.setenv("TWINNET_CACHE_DIR", str(tmp_path / "env-cache"))
    return tmp_path / "cache"


def count_calls(monkeypatch, name: str) -> list:
    calls, real = [], getattr(cifar, name)
    monkeypatch.setattr(cifar, name, lambda *a: calls.append(a) or real(*a))
    return calls


def test_official_archive_decodes_known_pixels(tmp_path, cache, monkeypatch):
    batches = write_archive(tmp_path / "data" / cifar.ARCHIVE_NAME)
    official(monkeypatch, batches)  # the archive's own md5 is not the published one: accepted by its batches'
    s = load_cifar10(tmp_path / "data", cache_dir=cache)
    tr_x, tr_y, te_x, te_y = expected_python(batches)
    assert isinstance(s, CifarSplit) and s.classes == CIFAR10_CLASSES and s.classes[0] == "airplane"
    assert s.train.x.shape == (5 * PER_BATCH, 3, 32, 32) and s.test.x.shape == (N_TEST, 3, 32, 32)
    assert s.train.x.dtype == np.uint8 and s.train.y.dtype == np.int64 and s.test.y.dtype == np.int64
    assert np.array_equal(s.train.x.reshape(-1, 3072), tr_x) and np.array_equal(s.test.x.reshape(-1, 3072), te_x)
    assert s.train.y.tolist() == tr_y.tolist() and s.test.y.tolist() == te_y.tolist()
    # channel-major rows: 1024 red, then green, then blue, each 32 rows of 32
    assert s.train.x[4, 1, 5, 7] == batches["data_batch_2"][b"data"][1, 1024 + 5 * 32 + 7]
    assert not s.lossy and "official python archive" in s.source and str(tmp_path / "data") in s.source


def test_extracted_batches_folder_in_a_dataset_subfolder(tmp_path, cache, monkeypatch):
    batches = write_batches(tmp_path / "cifar-10" / cifar.BATCHES_DIR)
    official(monkeypatch, batches)
    s = load_cifar10(tmp_path, cache_dir=cache)
    tr_x, tr_y, te_x, te_y = expected_python(batches)
    assert np.array_equal(s.train.x.reshape(-1, 3072), tr_x) and s.test.y.tolist() == te_y.tolist()
    assert "official python batches" in s.source and not s.lossy
    # the batches folder itself may be given
    again = load_cifar10(tmp_path / "cifar-10" / cifar.BATCHES_DIR, cache_dir=cache)
    assert np.array_equal(again.test.x.reshape(-1, 3072), te_x)


def test_archive_checksum_is_verified(tmp_path, cache, monkeypatch):
    path = tmp_path / cifar.ARCHIVE_NAME
    write_archive(path)
    with pytest.raises(TwinnetError, match="checksum: .* is not the official CIFAR-10 archive") as exc:
        load_cifar10(tmp_path, cache_dir=cache)
    assert "verify=False" in one_line_naming(exc, path) and no_cache(cache)
    assert len(load_cifar10(tmp_path, verify=False, cache_dir=cache).train) == 5 * PER_BATCH
    with pytest.raises(TwinnetError, match="not the official CIFAR-10 archive"):
        load_cifar10(tmp_path, cache_dir=cache)  # caught from the md5s in the cache too
    monkeypatch.setattr(cifar, "ARCHIVE_MD5", md5(path.read_bytes()))
    assert len(load_cifar10(tmp_path, cache_dir=cache).test) == N_TEST  # the archive's md5 alone suffices


def test_batch_checksum_names_the_file(tmp_path, cache, monkeypatch):
    d = tmp_path / cifar.BATCHES_DIR
    batches = write_batches(d)
    official(monkeypatch, batches)
    changed = fake_batches()
    changed["data_batch_3"][b"labels"][0] = (changed["data_batch_3"][b"labels"][0] + 1) % 10
    (d / "data_batch_3").write_bytes(py2_pickle(changed["data_batch_3"]))
    with pytest.raises(TwinnetError, match="is not the official CIFAR-10 data_batch_3") as exc:
        load_cifar10(tmp_path, cache_dir=cache)
    one_line_naming(exc, d / "data_batch_3")
    assert no_cache(cache)


def test_pickles_are_loaded_without_running_anything(tmp_path, cache):
    d = tmp_path / cifar.BATCHES_DIR
    write_batches(d)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.mkdir, (str(marker),)

    (d / "data_batch_2").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2))
    with pytest.raises(TwinnetError, match="not a readable pickle .*refuses to load") as exc:
        load_cifar10(tmp_path, verify=False, cache_dir=cache)
    one_line_naming(exc, d / "data_batch_2")
    assert not marker.exists() and no_cache(cache)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x80\x02}q\x00(U\x04data", "not a readable pickle"),  # cut short
        (b"garbage, not a pickle at all", "not a readable pickle"),
        (py2_pickle({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}), "rows of 3072 pixels"),
        (py2_pickle({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}), "rows of 3072 pixels"),
        (py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}), "2 images but 1 labels"),
        (py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}), "label 10 outside 0..9"),
        (py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [b"cat", b"dog"]}), "not integers"),
        (py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1.7]}), "not integers"),
        (py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, float("nan")]}), "not integers"),
        (py2_pickle([1, 2, 3]), "rows of 3072 pixels"),
    ],
    ids=[
        "truncated", "garbage", "wrong-width", "wrong-dtype", "label-count", "label-range", "label-type",
        "label-fraction", "label-nan", "not-a-dict",
    ],  # fmt: skip
)
def test_bad_batches_are_one_line_errors_naming_the_file(tmp_path, cache, content, message):
    d = tmp_path / cifar.BATCHES_DIR
    write_batches(d)
    (d / "test_batch").write_bytes(content)
    with pytest.raises(TwinnetError, match=message) as exc:
        load_cifar10(tmp_path, verify=False, cache_dir=cache)
    assert "re-download" in one_line_naming(exc, d / "test_batch") and no_cache(cache)


def test_whole_number_float_labels_are_read_as_their_classes(tmp_path, cache):
    batches = fake_batches()
    test_labels = batches["test_batch"][b"labels"]
    batches["test_batch"][b"labels"] = [float(v) for v in test_labels]  # 3.0 is class 3; only 1.7 is refused
    write_batches(tmp_path / cifar.BATCHES_DIR, batches)
    split = load_cifar10(tmp_path, verify=False, cache_dir=cache)
    assert split.test.y.dtype == np.int64 and split.test.y.tolist() == test_labels


def test_missing_batch_is_named(tmp_path, cache):
    d = tmp_path / cifar.BATCHES_DIR
    write_batches(d)
    (d / "data_batch_4").unlink()
    with pytest.raises(TwinnetError, match="lacks data_batch_4") as exc:
        load_cifar10(tmp_path, verify=False, cache_dir=cache)
    one_line_naming(exc, d)


@pytest.mark.parametrize("damage", ["truncate", "garble"])
def test_corrupt_official_archive(tmp_path, cache, damage):
    path = tmp_path / cifar.ARCHIVE_NAME
    write_archive(path)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) * 2 // 3]
    else:
        data[len(data) // 2 : len(data) // 2 + 64] = os.urandom(64)
    path.write_bytes(bytes(data))
    with pytest.raises(TwinnetError, match="corrupt or truncated") as exc:
        load_cifar10(tmp_path, verify=False, cache_dir=cache)
    assert "re-download" in one_line_naming(exc, path) and no_cache(cache)
    with pytest.raises(TwinnetError) as exc:  # verified: refused either way, naming the file
        load_cifar10(tmp_path, cache_dir=cache)
    one_line_naming(exc, path)
    assert no_cache(cache)


# ---- image folders and archives ----------------------------------------------------------------------


def rgb(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def write_tree(root: Path, fmt: str = "PNG", modes: bool = False):
    """Train: two images per class, 2 and 10 (only a natural sort puts 2 first); test: one. Returns expected arrays."""
    ext = {"PNG": "png", "JPEG": "jpg"}[fmt]
    want = {"train": ([], []), "test": ([], [])}
    seed = 0
    for split, names in (("train", ("2", "10")), ("test", ("0",))):
        for label, cls in enumerate(CIFAR10_CLASSES):
            (root / split / cls).mkdir(parents=True)
            for name in names:
                seed += 1
                # JPEG is lossy: flat colours survive it nearly exactly; PNG gets noise, kept exactly
                pixels = np.broadcast_to(rgb(seed)[0, 0], (32, 32, 3)).copy() if fmt == "JPEG" else rgb(seed)
                im = Image.fromarray(pixels)
                if modes and split == "train" and label < 3 and name == "2":  # grey, with alpha, with a palette
                    im, pixels = _other_mode(label, pixels)
                im.save(root / split / cls / f"{name}.{ext}", format=fmt)
                want[split][0].append(pixels.transpose(2, 0, 1))
                want[split][1].append(label)
    return tuple(np.array(a) for split in ("train", "test") for a in want[split])


def _other_mode(which: int, pixels: np.ndarray):
    if which == 0:
        grey = pixels[..., 0]
        return Image.fromarray(grey, mode="L"), np.repeat(grey[..., None], 3, axis=2)
    if which == 1:
        alpha = np.full((32, 32, 1), 77, np.uint8)
        return Image.fromarray(np.concatenate([pixels, alpha], axis=2), mode="RGBA"), pixels
    palette = np.random.default_rng(99).integers(0, 256, (256, 3), dtype=np.uint8)
    index = pixels[..., 0]
    im = Image.fromarray(index, mode="P")
    im.putpalette(palette.ravel().tolist())
    return im, palette[index]


def pack(tree: Path, archive: Path, prefix: str = "") -> Path:
    """Every file under tree into archive, below prefix; the format is chosen by the archive's name."""
    files = sorted(p for p in tree.rglob("*") if p.is_file())
    archive.parent.mkdir(parents=True, exist_ok=True)
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
            for p in files:
                z.write(p, prefix + p.relative_to(tree).as_posix())
    else:
        with tarfile.open(archive, "w:gz" if archive.name.endswith(("gz", "tgz")) else "w") as tf:
            for p in files:
                tf.add(p, prefix + p.relative_to(tree).as_posix())
    return archive


def test_image_folder_of_pngs_in_any_mode(tmp_path, cache):
    tr_x, tr_y, te_x, te_y = write_tree(tmp_path / "cifar10" / "tree", modes=True)
    s = load_cifar10(tmp_path, cache_dir=cache)
    assert s.train.x.shape == (20, 3, 32, 32) and s.test.x.shape == (10, 3, 32, 32) and s.train.x.dtype == np.uint8
    assert np.array_equal(s.train.x, tr_x) and np.array_equal(s.test.x, te_x)  # class, then natural name order
    assert s.train.y.tolist() == tr_y.tolist() == [c for c in range(10) for _ in range(2)]
    assert s.test.y.tolist() == list(range(10)) and s.test.y.dtype == np.int64
    assert np.array_equal(s.train.x[0, 0], s.train.x[0, 2])  # the grey image, made RGB
    assert not s.lossy and "image folder" in s.source and "(PNG)" in s.source


@pytest.mark.parametrize("suffix", [".tar.gz", ".tgz", ".tar", ".zip"])
def test_image_archives_of_pngs(tmp_path, cache, suffix):
    tr_x, tr_y, te_x, te_y = write_tree(tmp_path / "tree")
    archive = pack(tmp_path / "tree", tmp_path / "data" / f"pngs{suffix}", prefix="cifar-png/")
    s = load_cifar10(tmp_path / "data", cache_dir=cache)
    assert np.array_equal(s.train.x, tr_x) and np.array_equal(s.test.x, te_x)
    assert s.train.y.tolist() == tr_y.tolist() and s.test.y.tolist() == te_y.tolist()
    assert not s.lossy and str(archive) in s.source and "image archive" in s.source


def test_jpeg_archive_is_marked_lossy_and_the_official_archive_wins(tmp_path, cache, monkeypatch):
    tr_x, tr_y, te_x, te_y = write_tree(tmp_path / "tree", fmt="JPEG")
    archive = pack(tmp_path / "tree", tmp_path / "data" / "cifar10" / "cifar10-jpeg-q75.tar.gz", prefix="cifar10-jpeg/")
    s = load_cifar10(tmp_path / "data", cache_dir=cache)
    assert s.lossy and "JPEG, lossy" in s.source and str(archive) in s.source
    assert s.train.x.shape == tr_x.shape and s.train.y.tolist() == tr_y.tolist() and s.test.y.tolist() == te_y.tolist()
    assert np.abs(s.train.x.astype(int) - tr_x).max() <= 3 and np.abs(s.test.x.astype(int) - te_x).max() <= 3
    # a lossless official archive anywhere under the data directory is preferred to the JPEG copy
    batches = write_archive(tmp_path / "data" / cifar.ARCHIVE_NAME)
    official(monkeypatch, batches)
    assert not load_cifar10(tmp_path / "data", cache_dir=cache).lossy
    # ... unless the JPEG archive itself is given
    assert load_cifar10(archive, cache_dir=cache).lossy


def _tree_error(tmp_path, cache, change, message, named):
    write_tree(tmp_path / "tree")
    change(tmp_path / "tree")
    with pytest.raises(TwinnetError, match=message) as exc:
        load_cifar10(tmp_path / "tree", cache_dir=cache)
    one_line_naming(exc, named(tmp_path / "tree"))
    assert no_cache(cache)


def test_unexpected_class_folder_is_named(tmp_path, cache):
    def rename(t):
        (t / "train" / "cat").rename(t / "train" / "cats")

    _tree_error(tmp_path, cache, rename, "unexpected class folder train/cats/; .*exactly the ten", lambda t: t)


def test_missing_class_is_named(tmp_path, cache):
    def remove(t):
        for p in (t / "test" / "frog").iterdir():
            p.unlink()
        (t / "test" / "frog").rmdir()

    _tree_error(tmp_path, cache, remove, "test/ has no images of frog", lambda t: t)


def test_wrong_image_size_is_named(tmp_path, cache):
    def shrink(t):
        Image.fromarray(rgb(5)[:28, :30]).save(t / "train" / "dog" / "10.png")

    _tree_error(tmp_path, cache, shrink, "is 30x28, not 32x32", lambda t: t / "train" / "dog" / "10.png")


def test_undecodable_image_is_named(tmp_path, cache):
    def garble(t):
        data = (t / "test" / "ship" / "0.png").read_bytes()
        (t / "test" / "ship" / "0.png").write_bytes(data[: len(data) // 2])

    _tree_error(tmp_path, cache, garble, "cannot be decoded", lambda t: t / "test" / "ship" / "0.png")


def test_an_image_whose_header_claims_a_huge_size_is_named_not_decoded(tmp_path, cache):
    import struct

    def bomb(t):  # a BMP header of 20,000 x 20,000 pixels over 16 bytes: Pillow refuses to open it
        header = struct.pack("<IiiHHIIiiII", 40, 20000, 20000, 1, 24, 0, 0, 2835, 2835, 0, 0)
        (t / "test" / "ship" / "0.png").write_bytes(b"BM" + struct.pack("<IHHI", 70, 0, 0, 54) + header + bytes(16))

    _tree_error(tmp_path, cache, bomb, "cannot be decoded .*decompression bomb",
                lambda t: t / "test" / "ship" / "0.png")


def test_stray_files_beside_the_classes_are_errors(tmp_path, cache):
    def stray(t):
        (t / "train" / "notes.txt").write_text("hi")

    _tree_error(tmp_path, cache, stray, "unexpected train/notes.txt, expected train/<class>/<image> only", lambda t: t)


@pytest.mark.parametrize("damage", ["truncate", "garble"])
@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_corrupt_image_archive(tmp_path, cache, suffix, damage):
    write_tree(tmp_path / "tree")
    path = pack(tmp_path / "tree", tmp_path / "data" / f"images{suffix}")
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 3 : len(data) // 3 + 64] = bytes(64)
    path.write_bytes(bytes(data))
    with pytest.raises(TwinnetError) as exc:
        load_cifar10(path, cache_dir=cache)
    msg = one_line_naming(exc, path)
    assert "corrupt or truncated" in msg or "cannot be decoded" in msg
    assert no_cache(cache)


def test_archive_without_a_tree_or_with_two(tmp_path, cache):
    write_tree(tmp_path / "tree")
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "readme.txt").write_text("nothing here")
    bare = pack(tmp_path / "bare", tmp_path / "bare.zip")
    with pytest.raises(TwinnetError, match="holds no train/<class>/ or test/<class>/ images") as exc:
        load_cifar10(bare, cache_dir=cache)
    one_line_naming(exc, bare)
    two = tmp_path / "two.tar"
    with tarfile.open(two, "w") as tf:
        tf.add(tmp_path / "tree", "a")
        tf.add(tmp_path / "tree", "b")
    with pytest.raises(TwinnetError, match=r"several train/test trees \(a/, b/\)") as exc:
        load_cifar10(two, cache_dir=cache)
    one_line_naming(exc, two)


# ---- finding, downloading, caching -------------------------------------------------------------------


def test_nothing_found_lists_the_paths_tried(tmp_path, cache, monkeypatch):
    with pytest.raises(TwinnetError, match="no CIFAR-10 data directory given"):
        load_cifar10(cache_dir=cache)
    monkeypatch.setenv("TWINNET_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(TwinnetError, match="CIFAR-10 not found") as exc:
        load_cifar10(cache_dir=cache)
    msg = one_line_naming(exc, tmp_path / "data" / "cifar10")
    assert f"{tmp_path / 'data' / 'cifar-10'}, {tmp_path / 'data'} " in msg
    assert "--data-dir" in msg and "download=True" in msg and cifar.ARCHIVE_NAME in msg
    assert not (tmp_path / "data").exists()  # looking creates nothing
    (tmp_path / "data" / "cifar10" / "train" / "cat").mkdir(parents=True)  # half a tree: its missing half named
    with pytest.raises(TwinnetError, match="CIFAR-10 not found") as exc:
        load_cifar10(cache_dir=cache)
    assert f"{tmp_path / 'data' / 'cifar10'} holds train/ but no test/, and an image tree needs both" in str(exc.value)


@pytest.fixture
def server(monkeypatch):
    """A local HTTP server: routes maps a path to (body, declared length or None)."""
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    routes, hits = {}, []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            if self.path not in routes:
                self.send_error(404)
                return
            body, length = routes[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{srv.server_port}", routes=routes, hits=hits)
    srv.shutdown()
    srv.server_close()
    thread.join()


def test_download_from_a_local_server(tmp_path, cache, monkeypatch, server):
    batches = write_archive(tmp_path / "made" / cifar.ARCHIVE_NAME)
    body = (tmp_path / "made" / cifar.ARCHIVE_NAME).read_bytes()
    server.routes["/kriz/" + cifar.ARCHIVE_NAME] = (body, None)
    monkeypatch.setattr(cifar, "CIFAR10_URL", f"{server.url}/kriz/{cifar.ARCHIVE_NAME}")
    monkeypatch.setattr(cifar, "ARCHIVE_MD5", md5(body))
    data = tmp_path / "data"
    s = load_cifar10(data, cache_dir=cache, download=True)
    assert server.hits == ["/kriz/" + cifar.ARCHIVE_NAME]
    assert [p.name for p in (data / "cifar10").iterdir()] == [cifar.ARCHIVE_NAME]  # no temporary left
    assert (data / "cifar10" / cifar.ARCHIVE_NAME).read_bytes() == body
    assert np.array_equal(s.test.x.reshape(-1, 3072), expected_python(batches)[2])
    load_cifar10(data, cache_dir=cache, download=True)
    assert len(server.hits) == 1  # found this time


@pytest.mark.parametrize("problem", ["wrong-md5", "cut-short", "missing"])
def test_failed_download_leaves_nothing(tmp_path, cache, monkeypatch, server, problem):
    body = b"x" * 5000
    if problem != "missing":
        server.routes["/a.tar.gz"] = (body, len(body) + 1000 if problem == "cut-short" else None)
    monkeypatch.setattr(cifar, "CIFAR10_URL", f"{server.url}/a.tar.gz")
    monkeypatch.setattr(cifar, "ARCHIVE_MD5", "0" * 32 if problem == "wrong-md5" else md5(body))
    message = {"wrong-md5": "not the official archive", "cut-short": "cannot download|cut short", "missing": "404"}
    with pytest.raises(TwinnetError, match=message[problem]) as exc:
        load_cifar10(tmp_path / "data", cache_dir=cache, download=True)
    assert f"{server.url}/a.tar.gz" in str(exc.value) and "\n" not in str(exc.value)
    assert list((tmp_path / "data" / "cifar10").iterdir()) == [] and no_cache(cache)


def test_cache_is_written_once_and_reused(tmp_path, cache, monkeypatch):
    write_tree(tmp_path / "tree")
    reads = count_calls(monkeypatch, "_read_source")
    first = load_cifar10(tmp_path / "tree", cache_dir=cache)
    assert len(reads) == 1 and len(list(cache.glob("cifar10-*.npz"))) == 1
    second = load_cifar10(tmp_path / "tree", cache_dir=cache)
    assert len(reads) == 1  # nothing decoded again
    assert np.array_equal(first.train.x, second.train.x) and np.array_equal(first.test.y, second.test.y)
    assert second.source == first.source and second.lossy == first.lossy and second.train.y.dtype == np.int64
    assert [p.name for p in cache.iterdir()] == [next(cache.glob("*.npz")).name]  # no temporary left over
    load_cifar10(tmp_path / "tree")  # the default cache directory is $TWINNET_CACHE_DIR
    assert len(list((tmp_path / "env-cache").glob("cifar10-*.npz"))) == 1 and len(reads) == 2


def test_changed_image_invalidates_the_cache(tmp_path, cache):
    write_tree(tmp_path / "tree")
    load_cifar10(tmp_path / "tree", cache_dir=cache)
    path = tmp_path / "tree" / "test" / "horse" / "0.png"
    Image.fromarray(np.full((32, 32, 3), 9, np.uint8)).save(path)
    assert np.all(load_cifar10(tmp_path / "tree", cache_dir=cache).test.x[7] == 9)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong-key"])
def test_corrupt_cache_is_removed_and_rebuilt(tmp_path, cache, monkeypatch, damage):
    tr_x = write_tree(tmp_path / "tree")[0]
    load_cifar10(tmp_path / "tree", cache_dir=cache)
    (path,) = cache.glob("cifar10-*.npz")
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:5000])
    elif damage == "garbage":
        path.write_bytes(b"not a zip file at all")
    else:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["key"] = np.array("0" * 64)
        np.savez(path, **arrays)
    reads = count_calls(monkeypatch, "_read_source")
    assert np.array_equal(load_cifar10(tmp_path / "tree", cache_dir=cache).train.x, tr_x)
    load_cifar10(tmp_path / "tree", cache_dir=cache)
    assert len(reads) == 1  # rebuilt once, then sound


def test_channel_stats():
    x = np.random.default_rng(0).integers(0, 256, (9000, 3, 4, 4), dtype=np.uint8)  # more than one chunk
    x[:, 2] //= 2
    mean, std = channel_stats(x)
    f = x / 255
    assert np.allclose(mean, f.mean(axis=(0, 2, 3)), atol=1e-12) and np.allclose(std, f.std(axis=(0, 2, 3)), atol=1e-12)
    assert mean.shape == std.shape == (3,) and mean[2] < 0.3 < mean[0]
    with pytest.raises(TypeError, match="uint8"):
        channel_stats(f)


@pytest.mark.slow
def test_real_jpeg_copy(tmp_path, monkeypatch):
    if not REAL_JPEG.is_file():
        pytest.skip(f"{REAL_JPEG} is absent")
    reads = count_calls(monkeypatch, "_read_source")
    s = load_cifar10(REAL_JPEG.parent.parent, cache_dir=tmp_path)
    assert s.lossy and str(REAL_JPEG) in s.source
    assert s.train.x.shape == (50000, 3, 32, 32) and s.test.x.shape == (10000, 3, 32, 32)
    assert np.bincount(s.train.y).tolist() == [5000] * 10 and np.bincount(s.test.y).tolist() == [1000] * 10
    mean, std = channel_stats(s.train.x)
    assert np.allclose(mean, [0.4913, 0.4821, 0.4465], atol=2e-4)  # the README's figures for this copy
    assert np.allclose(std, [0.2452, 0.2428, 0.2606], atol=2e-4)
    cached = load_cifar10(REAL_JPEG, cache_dir=tmp_path)  # the archive named directly: the same cache
    assert len(reads) == 1 and cached.lossy
    assert np.array_equal(cached.train.x, s.train.x) and np.array_equal(cached.test.y, s.test.y)
