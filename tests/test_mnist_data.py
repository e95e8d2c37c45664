import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from twinnet import TwinnetError
from twinnet.data import idx, mnist
from twinnet.data.mnist import FILES, MNIST_MEAN, MNIST_STD, load_fashion_mnist, load_mnist, normalize

N_TRAIN, N_TEST = 20, 8
REAL_MNIST = Path("/work/shared/data/mnist")


def idx_bytes(array: np.ndarray) -> bytes:
    magic = idx.IMAGES_MAGIC if array.ndim == 3 else idx.LABELS_MAGIC
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def fake_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return dict(
        zip(
            FILES,
            (
                rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
                np.arange(N_TRAIN) % 10,
                rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
                (np.arange(N_TEST) * 3 + 1) % 10,
            ),
        )
    )


def write_fake(d: Path, gz: bool = True, arrays: dict | None = None) -> dict[str, np.ndarray]:
    arrays = fake_arrays() if arrays is None else arrays
    d.mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items():
        data = idx_bytes(a)
        (d / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)
    return arrays


def one_line_naming(exc: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


@pytest.fixture
def cache(tmp_path, monkeypatch):
    # no test may touch ~/.cache, whatever the environment says
    monkeypatch.delenv("TWINNET_DATA_DIR", raising=False)
    monkeypatch.setenv("TWINNET_CACHE_DIR", str(tmp_path / "env-cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("gz", [True, False])
def test_decodes_known_pixels_and_labels(tmp_path, cache, gz):
    want = write_fake(tmp_path / "d", gz=gz)
    s = load_mnist(tmp_path / "d", verify=False, cache_dir=cache)
    assert s.train.x.shape == (N_TRAIN, 1, 28, 28) and s.test.x.shape == (N_TEST, 1, 28, 28)
    assert s.train.x.dtype == np.uint8 and s.train.y.dtype == np.int64 and s.test.y.dtype == np.int64
    assert np.array_equal(s.train.x[:, 0], want[FILES[0]]) and np.array_equal(s.test.x[:, 0], want[FILES[2]])
    assert s.train.y.tolist() == want[FILES[1]].tolist() and s.test.y.tolist() == want[FILES[3]].tolist()
    assert s.train.x[3, 0, 5, 7] == want[FILES[0]][3, 5, 7]  # row-major: image, row, column
    assert s.classes == tuple("0123456789")
    assert s.source == f"MNIST IDX files in {tmp_path / 'd'}, checksums not verified"  # quoted in reports


def test_gzip_is_detected_by_content_not_name(tmp_path):
    a = fake_arrays()[FILES[0]]
    raw_named_gz, gz_named_raw = tmp_path / "raw.gz", tmp_path / "packed"
    raw_named_gz.write_bytes(idx_bytes(a))
    gz_named_raw.write_bytes(gzip.compress(idx_bytes(a)))
    r, g = idx.read_idx(raw_named_gz), idx.read_idx(gz_named_raw)
    assert np.array_equal(r.array, a) and np.array_equal(g.array, a)
    assert r.md5 == g.md5 == r.file_md5 != g.file_md5  # same content, different bytes on disk


def _cut_gzip(data: bytes) -> bytes:
    return gzip.compress(data)[:-30]


def _garble_gzip(data: bytes) -> bytes:
    packed = bytearray(gzip.compress(data))
    packed[len(packed) // 2 : len(packed) // 2 + 8] = b"\xff" * 8
    return bytes(packed)


IMAGES = idx_bytes(np.full((3, 28, 28), 7, np.uint8))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x00\x00\x08\x0c" + IMAGES[4:], "bad magic number 2060"),
        (b"\x00\x00", "too short"),
        (IMAGES[:10], "header cut short"),
        (IMAGES[:-1], "truncated: the header declares 3 images of 28x28"),
        (IMAGES + b"\x00\x00", "2 trailing bytes"),
        (_cut_gzip(IMAGES), "corrupt gzip"),
        (_garble_gzip(IMAGES), "corrupt gzip"),
        # 2**22 x 2**21 x 2**21 bytes: 2**64, which a 64-bit product wraps to 0, the size of the empty body
        (IMAGES[:4] + (2**22).to_bytes(4, "big") + (2**21).to_bytes(4, "big") * 2,
         "truncated: the header declares 4194304 images of 2097152x2097152"),
    ],
    ids=["bad-magic", "too-short", "short-header", "truncated", "trailing", "cut-gzip", "garbled-gzip", "overflow"],
)
def test_bad_idx_files_are_one_line_errors_naming_the_file(tmp_path, content, message):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(TwinnetError, match=message) as exc:
        idx.read_idx(path)
    assert "re-download" in one_line_naming(exc, path)


def test_a_bad_file_fails_the_whole_load_naming_it(tmp_path, cache):
    write_fake(tmp_path, gz=False)
    bad = tmp_path / FILES[3]
    bad.write_bytes(bad.read_bytes() + b"\x01")
    with pytest.raises(TwinnetError, match="trailing") as exc:
        load_mnist(tmp_path, verify=False, cache_dir=cache)
    one_line_naming(exc, bad)
    assert not cache.exists() or not any(cache.iterdir())  # nothing cached from a failed load


def test_images_and_labels_counts_must_agree(tmp_path, cache):
    arrays = fake_arrays()
    arrays[FILES[3]] = arrays[FILES[3]][:-1]
    write_fake(tmp_path, arrays=arrays)
    with pytest.raises(TwinnetError, match=f"has {N_TEST} images but .* has {N_TEST - 1} labels") as exc:
        load_mnist(tmp_path, verify=False, cache_dir=cache)
    one_line_naming(exc, tmp_path / (FILES[2] + ".gz"))
    one_line_naming(exc, tmp_path / (FILES[3] + ".gz"))


def test_labels_beyond_nine_are_caught(tmp_path, cache):
    arrays = fake_arrays()
    arrays[FILES[1]] = arrays[FILES[1]].copy()
    arrays[FILES[1]][4] = 12
    write_fake(tmp_path, arrays=arrays)
    with pytest.raises(TwinnetError, match="label 12 outside 0..9") as exc:
        load_mnist(tmp_path, verify=False, cache_dir=cache)
    one_line_naming(exc, tmp_path / (FILES[1] + ".gz"))


def test_swapped_images_and_labels_are_caught(tmp_path, cache):
    write_fake(tmp_path, gz=False)
    a, b = tmp_path / FILES[2], tmp_path / FILES[3]
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b), b.write_bytes(data_a)
    with pytest.raises(TwinnetError, match="holds labels .* not images") as exc:
        load_mnist(tmp_path, verify=False, cache_dir=cache)
    one_line_naming(exc, a)


def _fake_md5s(d: Path) -> dict[str, str]:
    return {f: idx.read_idx(d / (f + ".gz")).md5 for f in FILES}


def test_checksums_are_verified(tmp_path, cache, monkeypatch):
    write_fake(tmp_path)
    md5s = _fake_md5s(tmp_path)
    monkeypatch.setitem(mnist.OFFICIAL_MD5, "MNIST", md5s)
    reads = _count_reads(monkeypatch)
    assert len(load_mnist(tmp_path, cache_dir=cache).train) == N_TRAIN  # all four match: accepted

    monkeypatch.setitem(mnist.OFFICIAL_MD5, "MNIST", {**md5s, FILES[1]: "0" * 32})
    with pytest.raises(TwinnetError, match=f"not the official MNIST {FILES[1]} .*expected 0{{32}}") as exc:
        load_mnist(tmp_path, cache_dir=cache)
    assert len(reads) == 4  # caught from the md5s stored in the cache
    assert "verify=False" in one_line_naming(exc, tmp_path / (FILES[1] + ".gz"))
    assert len(load_mnist(tmp_path, verify=False, cache_dir=cache).train) == N_TRAIN


def test_an_unverified_copy_is_refused_by_default(tmp_path, cache):
    write_fake(tmp_path)
    with pytest.raises(TwinnetError, match=f"checksum: .*{FILES[0]}.gz is not the official MNIST"):
        load_mnist(tmp_path, cache_dir=cache)


def test_official_gz_checksum_is_accepted(tmp_path, cache, monkeypatch):
    write_fake(tmp_path)
    gz_md5s = {f: idx.md5_hex((tmp_path / (f + ".gz")).read_bytes()) for f in FILES}
    monkeypatch.setitem(mnist.OFFICIAL_GZ_MD5, "Fashion-MNIST", gz_md5s)
    assert len(load_fashion_mnist(tmp_path, cache_dir=cache).test) == N_TEST
    path = tmp_path / (FILES[0] + ".gz")
    recompressed = gzip.compress(idx_bytes(fake_arrays()[FILES[0]]), compresslevel=1, mtime=1)
    assert idx.md5_hex(recompressed) != gz_md5s[FILES[0]]
    path.write_bytes(recompressed)
    with pytest.raises(TwinnetError, match="use the original .gz download") as exc:
        load_fashion_mnist(tmp_path, cache_dir=cache)  # same content, recompressed: unverifiable
    one_line_naming(exc, path)


def test_the_other_dataset_and_misnamed_files_are_recognised(tmp_path, cache, monkeypatch):
    write_fake(tmp_path)
    monkeypatch.setitem(mnist.OFFICIAL_MD5, "Fashion-MNIST", _fake_md5s(tmp_path))
    with pytest.raises(TwinnetError, match=f"is Fashion-MNIST's {FILES[0]}, not MNIST's; load it with load_fashion"):
        load_mnist(tmp_path, cache_dir=cache)
    s = load_fashion_mnist(tmp_path, cache_dir=cache)
    assert s.classes[0] == "T-shirt/top" and s.classes[9] == "Ankle boot" and len(s.classes) == 10
    swapped = dict(zip(FILES, (FILES[2], FILES[1], FILES[0], FILES[3])))
    monkeypatch.setitem(mnist.OFFICIAL_MD5, "MNIST", {f: _fake_md5s(tmp_path)[swapped[f]] for f in FILES})
    with pytest.raises(TwinnetError, match=f"is MNIST's {FILES[2]}, not {FILES[0]}; the files are misnamed"):
        load_mnist(tmp_path, cache_dir=cache)


def test_missing_files_list_the_paths_tried(tmp_path, cache, monkeypatch):
    with pytest.raises(TwinnetError, match="no MNIST data directory given") as exc:
        load_mnist(cache_dir=cache)
    assert all(f in str(exc.value) for f in FILES)
    monkeypatch.setenv("TWINNET_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(TwinnetError, match="MNIST files not found") as exc:
        load_mnist(cache_dir=cache)
    msg = one_line_naming(exc, tmp_path / "data" / "mnist")
    assert f"{tmp_path / 'data' / 'mnist'}, {tmp_path / 'data'} " in msg and all(f in msg for f in FILES)

    write_fake(tmp_path / "data" / "mnist")
    (tmp_path / "data" / "mnist" / (FILES[3] + ".gz")).unlink()
    with pytest.raises(TwinnetError, match=f"lacks {FILES[3]} ") as exc:
        load_mnist(cache_dir=cache)
    one_line_naming(exc, tmp_path / "data" / "mnist")


def test_data_dir_from_env_with_dataset_subdirectories(tmp_path, cache, monkeypatch):
    digits = write_fake(tmp_path / "mnist", arrays=fake_arrays(1))
    clothes = write_fake(tmp_path / "fashion-mnist", gz=False, arrays=fake_arrays(2))
    monkeypatch.setenv("TWINNET_DATA_DIR", str(tmp_path))
    assert np.array_equal(load_mnist(verify=False, cache_dir=cache).train.x[:, 0], digits[FILES[0]])
    assert np.array_equal(load_fashion_mnist(verify=False, cache_dir=cache).train.x[:, 0], clothes[FILES[0]])
    # an explicit directory wins over the environment, and may hold the files directly
    direct = write_fake(tmp_path / "elsewhere", arrays=fake_arrays(3))
    s = load_mnist(tmp_path / "elsewhere", verify=False, cache_dir=cache)
    assert np.array_equal(s.test.x[:, 0], direct[FILES[2]])


def _count_reads(monkeypatch) -> list[Path]:
    reads, real = [], idx.read_idx
    monkeypatch.setattr(idx, "read_idx", lambda p: reads.append(p) or real(p))
    return reads


def test_cache_is_written_once_and_reused(tmp_path, cache, monkeypatch):
    want = write_fake(tmp_path / "d")
    reads = _count_reads(monkeypatch)
    first = load_mnist(tmp_path / "d", verify=False, cache_dir=cache)
    assert len(reads) == 4 and len(list(cache.glob("mnist-*.npz"))) == 1
    second = load_mnist(tmp_path / "d", verify=False, cache_dir=cache)
    assert len(reads) == 4  # not one IDX file read again
    assert np.array_equal(second.train.x, first.train.x) and np.array_equal(second.test.y, want[FILES[3]])
    assert second.train.x.shape == (N_TRAIN, 1, 28, 28) and second.train.y.dtype == np.int64
    assert [p.name for p in cache.iterdir()] == [next(cache.glob("*.npz")).name]  # no temporary left over

    # the default cache directory is $TWINNET_CACHE_DIR
    load_mnist(tmp_path / "d", verify=False)
    assert len(list((tmp_path / "env-cache").glob("mnist-*.npz"))) == 1 and len(reads) == 8


def test_changed_source_invalidates_the_cache(tmp_path, cache):
    write_fake(tmp_path, gz=False)
    load_mnist(tmp_path, verify=False, cache_dir=cache)
    new = fake_arrays(5)
    path = tmp_path / FILES[0]
    stat = path.stat()
    path.write_bytes(idx_bytes(new[FILES[0]]))  # same size: only the mtime tells
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert np.array_equal(load_mnist(tmp_path, verify=False, cache_dir=cache).train.x[:, 0], new[FILES[0]])


def test_interrupted_cache_write_leaves_nothing(tmp_path, cache, monkeypatch):
    write_fake(tmp_path)

    def interrupted(src, dst):
        raise KeyboardInterrupt

    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(os, "replace", interrupted)  # as if interrupted after writing, before the rename
        load_mnist(tmp_path, verify=False, cache_dir=cache)
    assert list(cache.iterdir()) == []
    load_mnist(tmp_path, verify=False, cache_dir=cache)
    assert len(list(cache.glob("mnist-*.npz"))) == 1


@pytest.mark.parametrize("damage", ["truncate", "flip-byte", "garbage", "wrong-key"])
def test_corrupt_cache_is_removed_and_rebuilt(tmp_path, cache, monkeypatch, damage):
    want = write_fake(tmp_path / "d")
    load_mnist(tmp_path / "d", verify=False, cache_dir=cache)
    (path,) = cache.glob("mnist-*.npz")
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip-byte":
        data[len(data) // 3] ^= 0xFF  # inside the train images
    elif damage == "garbage":
        data = bytearray(b"not a zip file at all")
    else:  # a well-formed cache of other sources under this name
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["key"] = np.array("0" * 64)
        np.savez(path, **arrays)
        data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data))
    reads = _count_reads(monkeypatch)
    s = load_mnist(tmp_path / "d", verify=False, cache_dir=cache)
    assert len(reads) == 4  # rebuilt from the IDX files
    assert np.array_equal(s.train.x[:, 0], want[FILES[0]])
    load_mnist(tmp_path / "d", verify=False, cache_dir=cache)
    assert len(reads) == 4  # and the rebuilt cache is sound


def test_unwritable_cache_only_warns(tmp_path):
    write_fake(tmp_path / "d")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.warns(UserWarning, match="cannot write the cache"):
        s = load_mnist(tmp_path / "d", verify=False, cache_dir=blocker / "cache")
    assert len(s.train) == N_TRAIN


def test_normalize():
    x = np.array([[0, 255], [128, 26]], dtype=np.uint8)
    out = normalize(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    assert np.allclose(out, (x / 255 - MNIST_MEAN) / MNIST_STD, rtol=1e-6)
    assert out[0, 0] == pytest.approx(-0.1307 / 0.3081) and out[0, 1] == pytest.approx((1 - 0.1307) / 0.3081)
    out64 = normalize(x, 0.5, 0.25, np.float64)
    assert out64.dtype == np.float64 and out64[0, 1] == 2.0 and out64[0, 0] == -2.0
    with pytest.raises(TypeError, match="uint8"):
        normalize(x.astype(np.float32))


def test_real_mnist(tmp_path, monkeypatch):
    if not REAL_MNIST.is_dir():
        pytest.skip(f"{REAL_MNIST} is absent")
    reads = _count_reads(monkeypatch)
    s = load_mnist(REAL_MNIST, verify=True, cache_dir=tmp_path)
    assert {p.name for p in reads} == {f + ".gz" for f in FILES}  # verified against the published md5s
    assert s.train.x.shape == (60000, 1, 28, 28) and s.test.x.shape == (10000, 1, 28, 28)
    assert s.train.y.shape == (60000,) and s.test.y.shape == (10000,)
    assert np.bincount(s.train.y).tolist()[:2] == [5923, 6742] and np.bincount(s.test.y).sum() == 10000
    # from the histogram of pixel values: exact, without a float copy of 47M pixels
    counts, values = np.bincount(s.train.x.ravel(), minlength=256), np.arange(256) / 255
    mean = (counts * values).sum() / counts.sum()
    std = np.sqrt((counts * (values - mean) ** 2).sum() / counts.sum())
    assert mean == pytest.approx(MNIST_MEAN, abs=1e-4) and std == pytest.approx(MNIST_STD, abs=1e-4)
    again = load_mnist(REAL_MNIST, cache_dir=tmp_path)
    assert len(reads) == 4 and np.array_equal(again.train.x, s.train.x)
