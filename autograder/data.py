"""Fashion-MNIST for Assignment 1: find the files, build the datasets, show samples.

``torchvision.datasets.FashionMNIST(root)`` (torchvision 0.29) reads only the
uncompressed IDX files in ``<root>/FashionMNIST/raw/`` and never the ``.gz`` files.
``find_fashion_mnist`` puts the uncompressed files there. It gunzips them from the
Debian package ``dataset-fashion-mnist`` when needed, and downloads them with
torchvision only as a last resort.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import shutil
import socket
import tempfile
import threading
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import numpy as np
import torch
from matplotlib.figure import Figure
from torch.utils.data import Dataset, Subset
from torchvision import datasets, transforms

logger = logging.getLogger(__name__)

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
IMAGE_MAGIC = 0x00000803  # IDX header: unsigned bytes, 3 dimensions
LABEL_MAGIC = 0x00000801  # IDX header: unsigned bytes, 1 dimension

IMAGE_SIZE = 224

# One unpacked copy of the data per user, shared by every notebook and every graded
# submission, instead of 55 MB unpacked next to each notebook.
DATA_DIR_VARIABLE = "ASSIGNMENT_DATA_DIR"
DEFAULT_DATA_DIR = Path("~/.cache/vgg11-assignment/data")


def default_data_root() -> Path:
    """Return $ASSIGNMENT_DATA_DIR, or ~/.cache/vgg11-assignment/data when it is unset."""
    return Path(os.environ.get(DATA_DIR_VARIABLE) or DEFAULT_DATA_DIR).expanduser()
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Seconds allowed to resolve and connect to a download mirror before the download
# counts as unavailable. torchvision's own requests have no timeout.
CONNECT_TIMEOUT_S = 5.0
# Seconds a single socket read may stall during a download before it fails.
DOWNLOAD_SOCKET_TIMEOUT_S = 30.0


class ClassName(NamedTuple):
    """Name of a Fashion-MNIST class in Korean and English."""

    ko: str
    en: str


# Label order of Fashion-MNIST, with the English names that torchvision uses.
CLASSES = (
    ClassName("티셔츠/탑", "T-shirt/top"),
    ClassName("바지", "Trouser"),
    ClassName("풀오버", "Pullover"),
    ClassName("드레스", "Dress"),
    ClassName("코트", "Coat"),
    ClassName("샌들", "Sandal"),
    ClassName("셔츠", "Shirt"),
    ClassName("스니커즈", "Sneaker"),
    ClassName("가방", "Bag"),
    ClassName("앵클 부츠", "Ankle boot"),
)

# Families that contain Hangul glyphs, in order of preference. The DejaVu fonts
# bundled with matplotlib have none.
# NOTE: these are the usual family names of the Nanum, Noto CJK and OS fonts. No
# Korean font was installed where this was written, so matplotlib's name for each
# was not checked. Matplotlib names a .ttc collection after its first face, which
# is "Noto Sans CJK JP" for Debian's fonts-noto-cjk.
KOREAN_FONT_FAMILIES = (
    "NanumGothic",
    "Noto Sans CJK KR",
    "Noto Sans CJK JP",
    "Noto Sans KR",
    "Malgun Gothic",
    "AppleGothic",
    "UnDotum",
)

_MESSAGES = {
    "not_found": {
        "ko": (
            "Fashion-MNIST 데이터를 찾을 수 없습니다. 확인한 위치:\n"
            "{attempts}\n"
            "다음 중 하나를 한 뒤 다시 실행하세요:\n"
            "  1. sudo apt-get install dataset-fashion-mnist\n"
            "     (Debian/Ubuntu. 파일이 {debian_dir} 에 설치됩니다.)\n"
            "  2. 파일 4개 ({files})를 {raw_dir} 에 복사하세요. .gz 파일 그대로도, 압축을 푼 파일도 됩니다.\n"
            "  3. 인터넷에 연결된 상태에서 실행하면 torchvision이 파일을 내려받습니다."
        ),
        "en": (
            "Fashion-MNIST not found. Locations tried:\n"
            "{attempts}\n"
            "Do one of the following, then run again:\n"
            "  1. sudo apt-get install dataset-fashion-mnist\n"
            "     (Debian/Ubuntu. It installs the files in {debian_dir}.)\n"
            "  2. Copy the 4 files ({files}) into {raw_dir}, either as .gz files or uncompressed.\n"
            "  3. Run while online, and torchvision downloads the files."
        ),
    },
    "missing_dir": {"ko": "폴더가 없습니다", "en": "directory not found"},
    "missing_files": {"ko": "파일이 없습니다: {names}", "en": "missing files: {names}"},
    "invalid_file": {"ko": "잘못된 파일 {path}: {detail}", "en": "invalid file {path}: {detail}"},
    "download_disabled": {
        "ko": "다운로드하지 않았습니다 (download=False)",
        "en": "not downloaded (download=False)",
    },
    "download_ci": {
        "ko": "CI 환경변수가 설정되어 있어 다운로드하지 않았습니다",
        "en": "not downloaded because the CI environment variable is set",
    },
    "download_failed": {"ko": "다운로드 실패: {detail}", "en": "download failed: {detail}"},
}


def _language() -> str:
    language = os.environ.get("AUTOGRADER_LANG", "ko")
    return language if language in ("ko", "en") else "ko"


def _render(key: str, language: str, **fields: object) -> str:
    return _MESSAGES[key][language].format(**fields)


class _Attempt(NamedTuple):
    """One location that was searched and why it did not provide the data."""

    location: str
    reason_key: str
    fields: dict


def _format_not_found(attempts: Sequence[_Attempt], raw_dir: Path) -> str:
    """Build the not-found message: Korean then English, or English only when AUTOGRADER_LANG=en."""
    languages = ("en",) if _language() == "en" else ("ko", "en")
    parts = []
    for language in languages:
        lines = []
        for attempt in attempts:
            reason = _render(attempt.reason_key, language, **attempt.fields)
            lines.append(f"  - {attempt.location}: {reason}")
        parts.append(
            _render(
                "not_found",
                language,
                attempts="\n".join(lines),
                debian_dir=DEBIAN_DIR,
                files=", ".join(f"{name}.gz" for name in RAW_FILES),
                raw_dir=raw_dir,
            )
        )
    return "\n\n".join(parts)


def _expected_magic(name: str) -> int:
    return IMAGE_MAGIC if "images" in name else LABEL_MAGIC


def _check_idx_file(path: Path) -> str | None:
    """Return why the uncompressed IDX file at ``path`` is unusable, or None if it is valid.

    Checks the magic number of the header and that the file size matches the
    dimensions that the header declares.
    """
    name = path.name
    size = path.stat().st_size
    with open(path, "rb") as stream:
        magic_bytes = stream.read(4)
        if len(magic_bytes) < 4:
            return f"{size} bytes, too short for an IDX header"
        magic = int.from_bytes(magic_bytes, "big")
        expected = _expected_magic(name)
        if magic != expected:
            return f"magic number {magic:#010x}, expected {expected:#010x}"
        ndim = magic & 0xFF
        dims_bytes = stream.read(4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        return f"{size} bytes, too short for an IDX header"
    dims = [int.from_bytes(dims_bytes[4 * i : 4 * i + 4], "big") for i in range(ndim)]
    expected_size = 4 + 4 * ndim + math.prod(dims)
    if size != expected_size:
        return f"{size} bytes, expected {expected_size} for dimensions {dims}"
    return None


def _locate_files(directory: Path) -> dict[str, Path] | None:
    """Map each raw file name to its file in ``directory``, uncompressed or ``.gz``.

    Returns None if any of the 4 files is missing.
    """
    found = {}
    for name in RAW_FILES:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            return None
    return found


def _missing_names(directory: Path) -> list[str]:
    return [
        name
        for name in RAW_FILES
        if not (directory / name).is_file() and not (directory / f"{name}.gz").is_file()
    ]


def _install_file(source: Path, raw_dir: Path, name: str) -> str | None:
    """Copy or gunzip ``source`` to ``raw_dir/name``, and return why that failed or None.

    The file is written under a temporary name and renamed only after it passes
    ``_check_idx_file``, so an interrupted run never leaves a partial file under
    the name that torchvision reads.
    """
    target = raw_dir / name
    if source == target:
        return _check_idx_file(target)

    handle, temporary = tempfile.mkstemp(dir=raw_dir, prefix=f".{name}.", suffix=".part")
    temporary_path = Path(temporary)
    try:
        with os.fdopen(handle, "wb") as output:
            if source.suffix == ".gz":
                with gzip.open(source, "rb") as compressed:
                    shutil.copyfileobj(compressed, output)
            else:
                with open(source, "rb") as plain:
                    shutil.copyfileobj(plain, output)
        problem = _check_idx_file(temporary_path)
        if problem is None:
            # mkstemp creates the file 0600. The grading sandbox runs the kernel as another uid
            # that reads this shared copy, so the file gets the usual mode of a data file.
            os.chmod(temporary_path, 0o644)
            os.replace(temporary_path, target)
        return problem
    except (OSError, EOFError, zlib.error) as error:
        # gzip raises BadGzipFile (an OSError), EOFError for a truncated file and
        # zlib.error for corrupt data.
        return f"cannot read: {error}"
    finally:
        temporary_path.unlink(missing_ok=True)


def _install_files(files: dict[str, Path], raw_dir: Path) -> list[tuple[Path, str]]:
    """Install every file into ``raw_dir`` and return (source, problem) for each file that failed."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    problems = []
    for name, source in files.items():
        problem = _install_file(source, raw_dir, name)
        if problem is not None:
            problems.append((source, problem))
    return problems


def _can_connect(url: str, timeout: float) -> str | None:
    """Return why the host of ``url`` cannot be reached within ``timeout`` seconds, or None.

    The connection runs in a daemon thread because name resolution ignores socket
    timeouts and can block far longer than ``timeout`` on a machine without network.
    """
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            with socket.create_connection((parts.hostname, port), timeout=timeout):
                outcome.append(None)
        except OSError as error:
            outcome.append(f"cannot connect to {parts.hostname}:{port}: {error}")

    thread = threading.Thread(target=connect, name="fashion-mnist-connect", daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    if not outcome:
        return f"timed out after {timeout:g} s connecting to {parts.hostname}:{port}"
    return outcome[0]


def _download(root: Path, raw_dir: Path) -> str | None:
    """Download the raw files with torchvision into ``raw_dir``, and return why that failed or None.

    torchvision downloads into a staging directory under ``root``, and the files
    move into ``raw_dir`` only after all of them have arrived, so a failed download
    leaves no partial files behind.
    """
    mirrors = list(datasets.FashionMNIST.mirrors)
    unreachable = [_can_connect(mirror, CONNECT_TIMEOUT_S) for mirror in mirrors]
    if all(problem is not None for problem in unreachable):
        return "; ".join(problem for problem in unreachable if problem)

    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".download-"))
    previous_timeout = socket.getdefaulttimeout()
    # torchvision opens its URLs without a timeout, so this default is the only
    # guard against a read that stalls forever.
    socket.setdefaulttimeout(DOWNLOAD_SOCKET_TIMEOUT_S)
    try:
        dataset_dir = datasets.FashionMNIST(staging, train=True, download=True).raw_folder
        files = {name: Path(dataset_dir) / name for name in RAW_FILES}
        problems = _install_files(files, raw_dir)
    except (OSError, RuntimeError) as error:
        # MNIST.download raises RuntimeError after all mirrors fail. A read that
        # times out escapes it as TimeoutError, an OSError.
        return f"{type(error).__name__}: {error}"
    finally:
        socket.setdefaulttimeout(previous_timeout)
        shutil.rmtree(staging, ignore_errors=True)
    if problems:
        return "; ".join(f"{source.name}: {problem}" for source, problem in problems)
    return None


def find_fashion_mnist(
    root: str | os.PathLike | None = None,
    *,
    download: bool | None = None,
    search_dirs: Iterable[str | os.PathLike] | None = None,
) -> Path:
    """Put the Fashion-MNIST files where ``torchvision.datasets.FashionMNIST(root)`` reads them.

    Sources, in order:

    1. ``<root>/FashionMNIST/raw/``, with the 4 files uncompressed or as ``.gz``.
       ``root`` defaults to ``default_data_root()``.
    2. Each directory of ``search_dirs``, by default only ``DEBIAN_DIR``, the
       install location of the Debian package ``dataset-fashion-mnist``.
    3. torchvision's download. ``download=None`` allows it unless the ``CI``
       environment variable is set, and ``download=False`` never downloads.

    Files from a ``.gz`` or from another directory are gunzipped or copied into
    ``<root>/FashionMNIST/raw/``. Each file must pass an IDX header and size check.

    Returns ``root`` as a Path. Raises FileNotFoundError when no source works. Its
    message lists every location tried with the reason and how to get the data,
    in Korean then English (English only when AUTOGRADER_LANG=en).
    """
    root = default_data_root() if root is None else Path(root).expanduser()
    raw_dir = root / "FashionMNIST" / "raw"
    if search_dirs is None:
        search_dirs = (DEBIAN_DIR,)
    directories = [raw_dir, *(Path(directory) for directory in search_dirs)]
    attempts: list[_Attempt] = []

    for directory in directories:
        if not directory.is_dir():
            attempts.append(_Attempt(str(directory), "missing_dir", {}))
            continue
        files = _locate_files(directory)
        if files is None:
            names = ", ".join(_missing_names(directory))
            attempts.append(_Attempt(str(directory), "missing_files", {"names": names}))
            continue
        problems = _install_files(files, raw_dir)
        if not problems:
            if directory != raw_dir:
                logger.info("Installed the Fashion-MNIST files from %s into %s", directory, raw_dir)
            return root
        for source, problem in problems:
            logger.warning("Skipping invalid Fashion-MNIST file %s: %s", source, problem)
            attempts.append(_Attempt(str(directory), "invalid_file", {"path": source, "detail": problem}))

    mirrors = ", ".join(datasets.FashionMNIST.mirrors)
    download_label = f"torchvision download ({mirrors})"
    if download is None and os.environ.get("CI"):
        attempts.append(_Attempt(download_label, "download_ci", {}))
    elif download is False:
        attempts.append(_Attempt(download_label, "download_disabled", {}))
    else:
        logger.info("Downloading Fashion-MNIST with torchvision from %s", mirrors)
        problem = _download(root, raw_dir)
        if problem is None:
            return root
        logger.info("Fashion-MNIST download failed: %s", problem)
        attempts.append(_Attempt(download_label, "download_failed", {"detail": problem}))

    raise FileNotFoundError(_format_not_found(attempts, raw_dir))


def build_transform(image_size: int = IMAGE_SIZE) -> transforms.Compose:
    """Build the image transform that the fine-tuned VGG11 expects.

    Each 28x28 grayscale image is resized to ``image_size`` (224 by default) and repeated to 3 channels,
    then normalized with the ImageNet mean and standard deviation, because the
    torchvision VGG11 weights were trained on images with those statistics.
    """
    return transforms.Compose(
        [
            transforms.Resize(image_size),
            transforms.Grayscale(num_output_channels=3),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def load_fashion_mnist(
    root: str | os.PathLike | None = None,
    train: bool = True,
    limit: int | None = None,
    seed: int = 0,
    *,
    download: bool | None = None,
    image_size: int = IMAGE_SIZE,
) -> Dataset:
    """Load the Fashion-MNIST training or test split as (image, label) pairs.

    Each image is a 3 x image_size x image_size float tensor (224 by default) normalized with ImageNet statistics
    (see ``build_transform``), and each label is an int in 0..9 that indexes
    ``CLASSES``. ``limit`` keeps a random subset of that many samples, and the same
    ``seed`` always selects the same subset. ``root`` and ``download`` are passed
    to ``find_fashion_mnist``.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of samples or None, got {limit}")

    data_root = find_fashion_mnist(root, download=download)
    dataset = datasets.FashionMNIST(data_root, train=train, transform=build_transform(image_size))
    if limit is None or limit >= len(dataset):
        return dataset

    generator = torch.Generator().manual_seed(seed)
    indices = torch.randperm(len(dataset), generator=generator)[:limit].tolist()
    return Subset(dataset, indices)


def korean_font_family() -> str | None:
    """Return the first installed font family from ``KOREAN_FONT_FAMILIES``, or None."""
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    for family in KOREAN_FONT_FAMILIES:
        if family in installed:
            return family
    return None


def _to_display_image(image: object, normalized: bool) -> np.ndarray:
    """Convert a dataset image (tensor CxHxW or PIL image) to a 2-D array in [0, 1] for imshow."""
    if not isinstance(image, torch.Tensor):
        return np.asarray(image, dtype=np.float32) / 255.0
    pixels = image.detach().cpu().float()
    if normalized and pixels.shape[0] == 3:
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        pixels = pixels * std + mean
    # All channels of a Fashion-MNIST image are equal, so the first one is the image.
    return pixels[0].clamp(0.0, 1.0).numpy()


def show_samples(dataset: Dataset, n: int = 16, *, normalized: bool = True) -> Figure:
    """Draw the first ``n`` samples of ``dataset`` in a grid, titled with their class names.

    With ``normalized=True``, image tensors are taken to carry the ImageNet
    normalization of ``build_transform``, which is undone for display. Titles are Korean only when a
    font from ``KOREAN_FONT_FAMILIES`` is installed, because matplotlib's default
    DejaVu fonts have no Hangul glyphs and would draw empty boxes.
    """
    count = min(n, len(dataset))
    if count < 1:
        raise ValueError(f"show_samples needs n >= 1 and a non-empty dataset, got n={n}, len={len(dataset)}")

    font_family = korean_font_family()
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(1.8 * columns, 2.0 * rows), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns)).ravel()

    for index, axis in enumerate(axes):
        axis.set_axis_off()
        if index >= count:
            continue
        image, label = dataset[index]
        label = int(label)
        axis.imshow(_to_display_image(image, normalized), cmap="gray", vmin=0.0, vmax=1.0)
        if font_family is not None:
            axis.set_title(CLASSES[label].ko, fontsize=9, fontfamily=font_family)
        else:
            axis.set_title(CLASSES[label].en, fontsize=9)
    return figure
