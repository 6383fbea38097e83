"""Tests for autograder.weights with checkpoints written into a temporary TORCH_HOME."""

import re

import pytest
import torch
import torchvision

from autograder import weights

HANGUL = re.compile("[\uac00-\ud7a3]")


@pytest.fixture(scope="module")
def seeded_state_dict():
    torch.manual_seed(1234)
    return torchvision.models.vgg11(weights=None).state_dict()


@pytest.fixture(scope="module")
def checkpoint_file(tmp_path_factory, seeded_state_dict):
    """A full VGG11 state_dict (about 530 MB) at <torch home>/hub/checkpoints/vgg11-8a719046.pth, written once."""
    torch_home = tmp_path_factory.mktemp("torch_home")
    path = torch_home / "hub" / "checkpoints" / weights.VGG11_CHECKPOINT
    path.parent.mkdir(parents=True)
    torch.save(seeded_state_dict, path)
    return path


@pytest.fixture(autouse=True)
def empty_torch_home(tmp_path, monkeypatch):
    """Give every test an empty TORCH_HOME and make any download attempt fail the test."""
    home = tmp_path / "empty_torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv("AUTOGRADER_LANG", raising=False)

    def fail_download(*args, **kwargs):
        raise AssertionError("load_vgg11_imagenet tried to download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fail_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", fail_download)
    return home


def mismatched_keys(model, expected):
    loaded = model.state_dict()
    return [key for key, tensor in expected.items() if not torch.equal(loaded[key], tensor)]


def test_hub_checkpoint_loaded(monkeypatch, capsys, checkpoint_file, seeded_state_dict):
    monkeypatch.setenv("TORCH_HOME", str(checkpoint_file.parents[2]))

    model = weights.load_vgg11_imagenet()

    assert model.pretrained is True
    assert mismatched_keys(model, seeded_state_dict) == []
    assert str(checkpoint_file) in capsys.readouterr().out


@pytest.mark.parametrize("use_directory", [False, True], ids=["file", "directory"])
def test_explicit_path_loaded(capsys, checkpoint_file, seeded_state_dict, use_directory):
    path = checkpoint_file.parent if use_directory else checkpoint_file

    model = weights.load_vgg11_imagenet(path)

    assert model.pretrained is True
    assert mismatched_keys(model, seeded_state_dict) == []
    assert str(checkpoint_file) in capsys.readouterr().out


def test_absent_uses_random_init(capsys, empty_torch_home):
    model = weights.load_vgg11_imagenet()
    output = capsys.readouterr().out
    hub_dir = empty_torch_home / "hub" / "checkpoints"

    assert model.pretrained is False
    assert str(hub_dir / weights.VGG11_CHECKPOINT) in output
    assert 'weights="IMAGENET1K_V1"' in output
    assert output.index("찾지 못했습니다") < output.index("not found")


def test_absent_message_english_only(capsys, monkeypatch):
    monkeypatch.setenv("AUTOGRADER_LANG", "en")

    weights.load_vgg11_imagenet()
    output = capsys.readouterr().out

    assert "not found" in output
    assert not HANGUL.search(output)


def test_absent_lists_explicit_path(capsys, tmp_path):
    missing = tmp_path / "nowhere" / "weights.pth"

    model = weights.load_vgg11_imagenet(missing)

    assert model.pretrained is False
    assert str(missing) in capsys.readouterr().out


def test_find_prefers_explicit_path(tmp_path, empty_torch_home):
    hub_file = empty_torch_home / "hub" / "checkpoints" / weights.VGG11_CHECKPOINT
    hub_file.parent.mkdir(parents=True)
    hub_file.write_bytes(b"hub")
    explicit = tmp_path / "explicit.pth"
    explicit.write_bytes(b"explicit")

    assert weights.find_vgg11_checkpoint(explicit) == explicit


def test_find_falls_back_to_hub(tmp_path, empty_torch_home):
    hub_file = empty_torch_home / "hub" / "checkpoints" / weights.VGG11_CHECKPOINT
    hub_file.parent.mkdir(parents=True)
    hub_file.write_bytes(b"hub")

    assert weights.find_vgg11_checkpoint(tmp_path / "missing.pth") == hub_file


def test_find_returns_none_when_absent():
    assert weights.find_vgg11_checkpoint() is None


def write_truncated(path):
    torch.save({"weight": torch.ones(100)}, path)
    path.write_bytes(path.read_bytes()[:200])


def write_garbage(path):
    path.write_bytes(b"not a checkpoint " * 20)


def write_empty(path):
    path.write_bytes(b"")


def write_other_model(path):
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)


def write_tensor(path):
    torch.save(torch.zeros(3), path)


@pytest.mark.parametrize("write", [write_truncated, write_garbage, write_empty, write_other_model, write_tensor])
def test_corrupt_file_raises(tmp_path, write):
    path = tmp_path / weights.VGG11_CHECKPOINT
    write(path)

    with pytest.raises(weights.CheckpointError) as raised:
        weights.load_vgg11_imagenet(path)

    assert str(path) in str(raised.value)


def test_mismatch_names_wrong_shape():
    state_dict = {"weight": torch.zeros(3, 2), "bias": torch.zeros(2)}

    mismatch = weights._describe_mismatch(torch.nn.Linear(2, 2), state_dict)

    assert "weight: file (3, 2), model (2, 2)" in mismatch


def test_mismatch_none_for_same_model():
    model = torch.nn.Linear(2, 2)

    assert weights._describe_mismatch(model, model.state_dict()) is None
