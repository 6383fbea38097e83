"""torchvision VGG11 with ImageNet weights from a local file, never from the network.

torchvision stores the ImageNet weights of VGG11 (``weights="IMAGENET1K_V1"``) as
``vgg11-8a719046.pth`` in ``torch.hub.get_dir()/checkpoints``, which is
``$TORCH_HOME/hub/checkpoints`` by default. No Python or Debian package ships this
file, so it is there only after a user copied it or ran torchvision online once.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
import torchvision
from torch import nn

logger = logging.getLogger(__name__)

VGG11_CHECKPOINT = "vgg11-8a719046.pth"

_MESSAGES = {
    "loaded": {
        "ko": "ImageNet으로 학습된 VGG11 가중치를 불러왔습니다: {path}",
        "en": "Loaded the ImageNet VGG11 weights from {path}",
    },
    "not_found": {
        "ko": (
            "VGG11 ImageNet 가중치 파일 {name} 을(를) 찾지 못했습니다. 확인한 경로: {paths}\n"
            "모델은 무작위 초기값으로 시작합니다. 그래서 features를 고정한 미세 조정의 정확도는 "
            "ImageNet 가중치를 쓸 때보다 크게 낮고, chance 수준(약 10%)에 머물 수 있습니다.\n"
            "가중치를 쓰려면 {name} 을(를) {hub_dir} 에 복사하거나, 인터넷에 연결된 상태에서 "
            'torchvision.models.vgg11(weights="IMAGENET1K_V1") 을 한 번 실행한 뒤 다시 실행하세요.'
        ),
        "en": (
            "VGG11 ImageNet weights file {name} not found. Paths tried: {paths}\n"
            "The model starts from random initialisation, so fine-tuning with frozen features "
            "reaches a much lower accuracy than with the ImageNet weights and may stay near chance (10%).\n"
            "To use the weights, copy {name} into {hub_dir}, or run "
            'torchvision.models.vgg11(weights="IMAGENET1K_V1") once while online, then run again.'
        ),
    },
    "corrupt": {
        "ko": (
            "VGG11 가중치 파일 {path} 을(를) 읽을 수 없습니다: {detail}\n"
            "파일이 손상되었거나 VGG11 가중치가 아닙니다. 이 파일을 지우고 {name} 을(를) 다시 복사하거나 "
            'torchvision.models.vgg11(weights="IMAGENET1K_V1") 로 다시 내려받으세요.'
        ),
        "en": (
            "Cannot read the VGG11 weights file {path}: {detail}\n"
            "The file is corrupt or does not contain VGG11 weights. Delete it, then copy {name} again or "
            'download it again with torchvision.models.vgg11(weights="IMAGENET1K_V1").'
        ),
    },
}


class CheckpointError(RuntimeError):
    """A VGG11 weights file exists but cannot be loaded into torchvision's VGG11."""


def _message(key: str, **fields: object) -> str:
    """Format a message in Korean then English, or in English only when AUTOGRADER_LANG=en."""
    languages = ("en",) if os.environ.get("AUTOGRADER_LANG", "ko") == "en" else ("ko", "en")
    return "\n".join(_MESSAGES[key][language].format(**fields) for language in languages)


def hub_checkpoint_dir() -> Path:
    """Return the directory where torch.hub caches downloaded weights files."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _candidate_paths(path: str | os.PathLike | None) -> list[Path]:
    """List the files to try in order: ``path`` (a file, or a directory containing the checkpoint), then the hub cache."""
    candidates = []
    if path is not None:
        explicit = Path(path).expanduser()
        candidates.append(explicit / VGG11_CHECKPOINT if explicit.is_dir() else explicit)
    candidates.append(hub_checkpoint_dir() / VGG11_CHECKPOINT)
    return candidates


def find_vgg11_checkpoint(path: str | os.PathLike | None = None) -> Path | None:
    """Return the VGG11 ImageNet weights file to load, or None if there is none.

    ``path`` is tried first and may name the file or a directory that contains
    ``VGG11_CHECKPOINT``. The torch.hub cache is tried next. Nothing is downloaded.
    """
    candidates = _candidate_paths(path)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
        logger.info("VGG11 weights file not found at %s", candidate)
    return None


def _checkpoint_error(checkpoint: Path, detail: str) -> CheckpointError:
    return CheckpointError(_message("corrupt", path=checkpoint, detail=detail, name=VGG11_CHECKPOINT))


def _first_line(error: BaseException, limit: int = 200) -> str:
    lines = str(error).splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text[:limit]


def _read_state_dict(checkpoint: Path) -> Mapping:
    """Read a state_dict with ``torch.load(weights_only=True)``, raising CheckpointError naming the file if that fails."""
    try:
        state_dict = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's own message suggests weights_only=False, which is wrong advice for a
        # damaged file and unsafe for a file of unknown origin, so it is not shown.
        raise _checkpoint_error(checkpoint, "torch.load(weights_only=True) rejected the file (UnpicklingError)") from error
    except Exception as error:
        # torch.load raises many unrelated types for a damaged file: RuntimeError for a
        # truncated zip archive, EOFError for an empty file, even KeyError for random bytes.
        raise _checkpoint_error(checkpoint, f"torch.load failed: {_first_line(error)}") from error

    if not isinstance(state_dict, Mapping):
        raise _checkpoint_error(checkpoint, f"the file contains a {type(state_dict).__name__}, not a state_dict")
    return state_dict


def _describe_mismatch(model: nn.Module, state_dict: Mapping) -> str | None:
    """Describe how the keys and shapes of ``state_dict`` differ from ``model``'s, or return None if they match."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    wrong_shapes = [
        f"{key}: file {tuple(value.shape)}, model {tuple(expected[key].shape)}"
        for key, value in state_dict.items()
        if key in expected and isinstance(value, torch.Tensor) and value.shape != expected[key].shape
    ]

    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (first: {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (first: {unexpected[0]})")
    if wrong_shapes:
        problems.append(f"{len(wrong_shapes)} shape mismatches (first: {wrong_shapes[0]})")
    return "; ".join(problems) if problems else None


def _load_state_dict(model: nn.Module, checkpoint: Path) -> None:
    """Load the weights file into ``model``, raising CheckpointError naming the file if that fails."""
    state_dict = _read_state_dict(checkpoint)
    mismatch = _describe_mismatch(model, state_dict)
    if mismatch is not None:
        raise _checkpoint_error(checkpoint, f"not a torchvision VGG11 state_dict: {mismatch}")
    try:
        model.load_state_dict(state_dict)
    except (RuntimeError, TypeError) as error:
        raise _checkpoint_error(checkpoint, f"load_state_dict failed: {_first_line(error)}") from error


def load_vgg11_imagenet(path: str | os.PathLike | None = None) -> nn.Module:
    """Build torchvision's VGG11 and load the ImageNet weights if a local file has them.

    The file is looked up with ``find_vgg11_checkpoint(path)`` and is never
    downloaded. Without a file, the model keeps torchvision's random
    initialisation. ``model.pretrained`` is True or False accordingly, and one
    printed message (Korean then English) states which case applies. Raises
    CheckpointError when the file exists but cannot be loaded.
    """
    model = torchvision.models.vgg11(weights=None)
    checkpoint = find_vgg11_checkpoint(path)

    if checkpoint is None:
        tried = ", ".join(str(candidate) for candidate in _candidate_paths(path))
        model.pretrained = False
        print(_message("not_found", name=VGG11_CHECKPOINT, paths=tried, hub_dir=hub_checkpoint_dir()))
        return model

    _load_state_dict(model, checkpoint)
    model.pretrained = True
    print(_message("loaded", path=checkpoint))
    return model
