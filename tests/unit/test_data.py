"""Tests for autograder.data on tiny IDX files written in tmp_path.

Only test_debian_files_load reads the real Fashion-MNIST files, and it is skipped
when the Debian package is not installed. Download tests use servers on 127.0.0.1.
"""

import functools
import gzip
import hashlib
import http.server
import re
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torchvision import datasets

from autograder import data

TRAIN_COUNT = 20
TEST_COUNT = 10
HANGUL = re.compile("[\uac00-\ud7a3]")


def write_idx(path: Path, array: np.ndarray, compress: bool) -> Path:
    """Write a uint8 array as an IDX file (magic 0x0000 08 <ndim>, big-endian dims, data)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def write_dataset(directory: Path, compress: bool = True, seed: int = 0) -> dict[str, bytes]:
    """Write the 4 Fashion-MNIST files with random images and return their uncompressed bytes by name."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (TRAIN_COUNT, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(TRAIN_COUNT) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (TEST_COUNT, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(TEST_COUNT) % 10,
    }
    contents = {}
    for name, array in arrays.items():
        written = write_idx(directory / name, array, compress)
        contents[name] = gzip.decompress(written.read_bytes()) if compress else written.read_bytes()
    return contents


def raw_contents(root: Path) -> dict[str, bytes]:
    raw_dir = root / "FashionMNIST" / "raw"
    return {name: (raw_dir / name).read_bytes() for name in data.RAW_FILES}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Point torchvision's mirror at a closed local port so no test can reach the internet."""
    monkeypatch.setattr(datasets.FashionMNIST, "mirrors", [f"http://127.0.0.1:{closed_port()}/"])
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("AUTOGRADER_LANG", raising=False)


@pytest.fixture
def source_dir(tmp_path):
    directory = tmp_path / "debian"
    write_dataset(directory)
    return directory


def test_raw_dir_searched_first(tmp_path, source_dir):
    root = tmp_path / "data"
    expected = write_dataset(root / "FashionMNIST" / "raw", compress=False, seed=1)

    found = data.find_fashion_mnist(root, download=False, search_dirs=[source_dir])

    assert found == root
    assert raw_contents(root) == expected


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "plain"])
def test_search_dir_installed_into_raw(tmp_path, compress):
    source = tmp_path / "source"
    expected = write_dataset(source, compress=compress)
    root = tmp_path / "data"

    found = data.find_fashion_mnist(root, download=False, search_dirs=[source])

    assert found == root
    assert raw_contents(root) == expected


def test_gz_in_raw_dir_gunzipped(tmp_path):
    root = tmp_path / "data"
    expected = write_dataset(root / "FashionMNIST" / "raw", compress=True)

    data.find_fashion_mnist(root, download=False, search_dirs=[])

    assert raw_contents(root) == expected


def test_search_dirs_tried_in_order(tmp_path):
    first = tmp_path / "first"
    second = tmp_path / "second"
    expected = write_dataset(first, seed=1)
    write_dataset(second, seed=2)
    root = tmp_path / "data"

    data.find_fashion_mnist(root, download=False, search_dirs=[first, second])

    assert raw_contents(root) == expected


def corrupt_truncated_gz(path: Path) -> None:
    gz = path.with_name(path.name + ".gz")
    gz.write_bytes(gz.read_bytes()[:100])


def corrupt_magic(path: Path) -> None:
    gz = path.with_name(path.name + ".gz")
    payload = bytearray(gzip.decompress(gz.read_bytes()))
    payload[3] = 0x02
    gz.write_bytes(gzip.compress(bytes(payload)))


def corrupt_size(path: Path) -> None:
    gz = path.with_name(path.name + ".gz")
    gz.write_bytes(gzip.compress(gzip.decompress(gz.read_bytes())[:-5]))


def corrupt_not_gzip(path: Path) -> None:
    path.with_name(path.name + ".gz").write_bytes(b"this is not gzip data")


@pytest.mark.parametrize("corrupt", [corrupt_truncated_gz, corrupt_magic, corrupt_size, corrupt_not_gzip])
def test_invalid_source_skipped(tmp_path, caplog, corrupt):
    broken = tmp_path / "broken"
    write_dataset(broken, seed=1)
    corrupt(broken / "train-images-idx3-ubyte")
    good = tmp_path / "good"
    expected = write_dataset(good, seed=2)
    root = tmp_path / "data"

    data.find_fashion_mnist(root, download=False, search_dirs=[broken, good])

    assert raw_contents(root) == expected
    assert "train-images-idx3-ubyte.gz" in caplog.text
    assert not list((root / "FashionMNIST" / "raw").glob(".*.part"))


def test_invalid_raw_file_replaced(tmp_path, source_dir):
    root = tmp_path / "data"
    raw_dir = root / "FashionMNIST" / "raw"
    write_dataset(raw_dir, compress=False, seed=1)
    (raw_dir / "t10k-labels-idx1-ubyte").write_bytes(b"\0\0\x08")
    expected = gzip.decompress((source_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())

    data.find_fashion_mnist(root, download=False, search_dirs=[source_dir])

    assert (raw_dir / "t10k-labels-idx1-ubyte").read_bytes() == expected


def test_not_found_message(tmp_path):
    root = tmp_path / "data"
    partial = tmp_path / "partial"
    write_dataset(partial)
    (partial / "t10k-images-idx3-ubyte.gz").unlink()
    absent = tmp_path / "absent"

    with pytest.raises(FileNotFoundError) as raised:
        data.find_fashion_mnist(root, download=False, search_dirs=[partial, absent])
    message = str(raised.value)

    assert str(root / "FashionMNIST" / "raw") in message
    assert str(partial) in message
    assert "t10k-images-idx3-ubyte" in message
    assert str(absent) in message
    assert "download=False" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert message.index("찾을 수 없습니다") < message.index("not found")


def test_not_found_english_only(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOGRADER_LANG", "en")

    with pytest.raises(FileNotFoundError) as raised:
        data.find_fashion_mnist(tmp_path / "data", download=False, search_dirs=[])

    assert "not found" in str(raised.value)
    assert not HANGUL.search(str(raised.value))


def test_download_skipped_under_ci(tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")

    def fail_download(*args):
        raise AssertionError("find_fashion_mnist tried to download although CI is set")

    monkeypatch.setattr(data, "_download", fail_download)

    with pytest.raises(FileNotFoundError) as raised:
        data.find_fashion_mnist(tmp_path / "data", search_dirs=[])

    assert "CI" in str(raised.value)


def test_download_refused_fails_fast(tmp_path):
    start = time.monotonic()

    with pytest.raises(FileNotFoundError) as raised:
        data.find_fashion_mnist(tmp_path / "data", download=True, search_dirs=[])

    assert "download failed" in str(raised.value)
    assert time.monotonic() - start < 5.0


def test_download_stalled_server_times_out(tmp_path, monkeypatch):
    # The listening socket accepts connections through its backlog but never
    # responds, like a proxy that swallows requests.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        monkeypatch.setattr(datasets.FashionMNIST, "mirrors", [f"http://127.0.0.1:{port}/"])
        monkeypatch.setattr(data, "DOWNLOAD_SOCKET_TIMEOUT_S", 0.5)
        start = time.monotonic()

        with pytest.raises(FileNotFoundError) as raised:
            data.find_fashion_mnist(tmp_path / "data", download=True, search_dirs=[])

    assert "timed out" in str(raised.value)
    assert time.monotonic() - start < 10.0
    assert socket.getdefaulttimeout() is None


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def test_download_from_local_mirror(tmp_path, monkeypatch):
    mirror_dir = tmp_path / "mirror"
    expected = write_dataset(mirror_dir)
    resources = [
        (f"{name}.gz", hashlib.md5((mirror_dir / f"{name}.gz").read_bytes()).hexdigest())
        for name in data.RAW_FILES
    ]
    handler = functools.partial(QuietHandler, directory=str(mirror_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setattr(datasets.FashionMNIST, "mirrors", [f"http://127.0.0.1:{server.server_port}/"])
        monkeypatch.setattr(datasets.FashionMNIST, "resources", resources)
        root = tmp_path / "data"

        data.find_fashion_mnist(root, download=True, search_dirs=[])
    finally:
        server.shutdown()
        server.server_close()

    assert raw_contents(root) == expected
    assert not list(root.glob(".download-*"))


@pytest.fixture
def tiny_root(tmp_path, source_dir, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_DIR", source_dir)
    return tmp_path / "data"


@pytest.mark.parametrize("train, count", [(True, TRAIN_COUNT), (False, TEST_COUNT)], ids=["train", "test"])
def test_load_full_split(tiny_root, train, count):
    dataset = data.load_fashion_mnist(tiny_root, train=train, download=False)

    assert len(dataset) == count


def test_load_sample_format(tiny_root):
    image, label = data.load_fashion_mnist(tiny_root, download=False)[3]

    assert image.shape == (3, 224, 224)
    assert image.dtype == torch.float32
    assert label == 3


def test_load_imagenet_normalization(tiny_root):
    dataset = data.load_fashion_mnist(tiny_root, download=False)
    image, _ = dataset[0]
    pixel = dataset.data[0, 0, 0].item() / 255.0
    expected = [(pixel - mean) / std for mean, std in zip(data.IMAGENET_MEAN, data.IMAGENET_STD)]

    # Resize interpolates, but the top-left output pixel takes the value of the
    # top-left input pixel up to rounding.
    assert image[:, 0, 0].tolist() == pytest.approx(expected, abs=0.05)


def test_limit_subset_size(tiny_root):
    subset = data.load_fashion_mnist(tiny_root, limit=5, seed=0, download=False)

    assert len(subset) == 5


def test_limit_same_seed_same_subset(tiny_root):
    first = data.load_fashion_mnist(tiny_root, limit=5, seed=0, download=False)
    second = data.load_fashion_mnist(tiny_root, limit=5, seed=0, download=False)

    assert first.indices == second.indices


def test_limit_other_seed_other_subset(tiny_root):
    first = data.load_fashion_mnist(tiny_root, limit=5, seed=0, download=False)
    second = data.load_fashion_mnist(tiny_root, limit=5, seed=1, download=False)

    assert first.indices != second.indices


def test_limit_above_size_keeps_all(tiny_root):
    dataset = data.load_fashion_mnist(tiny_root, limit=1000, download=False)

    assert len(dataset) == TRAIN_COUNT


@pytest.mark.parametrize("limit", [0, -3])
def test_limit_invalid_raises(tiny_root, limit):
    with pytest.raises(ValueError, match="limit"):
        data.load_fashion_mnist(tiny_root, limit=limit, download=False)


def test_classes_match_torchvision():
    assert [name.en for name in data.CLASSES] == datasets.FashionMNIST.classes


@pytest.mark.parametrize("n, expected", [(16, 16), (6, 6), (100, TRAIN_COUNT)])
def test_show_samples_titles(tiny_root, monkeypatch, n, expected):
    monkeypatch.setattr(data, "korean_font_family", lambda: None)
    dataset = data.load_fashion_mnist(tiny_root, download=False)

    figure = data.show_samples(dataset, n=n)
    titles = [axis.get_title() for axis in figure.axes if axis.get_title()]

    assert isinstance(figure, Figure)
    assert titles == [data.CLASSES[i % 10].en for i in range(expected)]


def test_show_samples_korean_titles(tiny_root, monkeypatch):
    monkeypatch.setattr(data, "korean_font_family", lambda: "DejaVu Sans")
    dataset = data.load_fashion_mnist(tiny_root, download=False)

    figure = data.show_samples(dataset, n=3)
    titles = [axis.get_title() for axis in figure.axes if axis.get_title()]

    assert titles == [data.CLASSES[i].ko for i in range(3)]


def test_show_samples_undoes_normalization(tiny_root):
    dataset = data.load_fashion_mnist(tiny_root, download=False)

    figure = data.show_samples(dataset, n=1)
    displayed_pixels = figure.axes[0].get_images()[0].get_array()

    assert displayed_pixels[0, 0] == pytest.approx(dataset.data[0, 0, 0].item() / 255.0, abs=0.05)


@pytest.mark.skipif(not data.DEBIAN_DIR.is_dir(), reason="Debian package dataset-fashion-mnist is not installed")
def test_debian_files_load(tmp_path):
    root = data.find_fashion_mnist(tmp_path / "data", download=False)
    train = data.load_fashion_mnist(root, train=True, download=False)
    test = data.load_fashion_mnist(root, train=False, download=False)

    assert len(train) == 60000
    assert len(test) == 10000
    assert train[0][0].shape == (3, 224, 224)
