"""Tests for autograder.training with a tiny CNN on random 1x8x8 images."""

import random

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from autograder import training

SAMPLES = 40
BATCH = 8


class TinyNet(nn.Module):
    """A VGG-shaped model: ``features`` (frozen in the tests) then ``classifier``."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 4, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class ConstantClassifier(nn.Module):
    """Predicts class 0 for every input."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([1.0] + [0.0] * 9))

    def forward(self, x):
        return self.bias.expand(x.shape[0], 10)


@pytest.fixture
def loader():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(SAMPLES, 1, 8, 8, generator=generator)
    labels = torch.arange(SAMPLES) % 10
    return DataLoader(TensorDataset(images, labels), batch_size=BATCH, shuffle=True, generator=generator)


@pytest.fixture
def frozen_model():
    torch.manual_seed(0)
    model = TinyNet()
    for parameter in model.features.parameters():
        parameter.requires_grad = False
    return model


@pytest.mark.parametrize(
    "epochs, max_steps, expected_steps",
    [(1, None, 5), (2, None, 10), (3, 7, 7), (1, 2, 2), (1, 50, 5)],
)
def test_history_length(frozen_model, loader, epochs, max_steps, expected_steps):
    history = training.train_classifier(
        frozen_model, loader, epochs=epochs, max_steps=max_steps, device="cpu", progress=False
    )

    assert len(history["loss"]) == expected_steps
    assert len(history["accuracy"]) == expected_steps
    assert history["step"] == list(range(1, expected_steps + 1))


class CountingBatches:
    """An iterable of batches without len() that counts the batches it yields."""

    def __init__(self, batches):
        self.batches = batches
        self.yielded = 0

    def __iter__(self):
        for batch in self.batches:
            self.yielded += 1
            yield batch


def test_max_steps_stops_fetching(frozen_model, loader):
    batches = CountingBatches(list(loader))

    history = training.train_classifier(frozen_model, batches, epochs=3, max_steps=2, device="cpu", progress=False)

    assert len(history["loss"]) == 2
    assert batches.yielded == 2


def test_history_epochs(frozen_model, loader):
    history = training.train_classifier(frozen_model, loader, epochs=2, device="cpu", progress=False)

    assert history["epoch"] == [1] * 5 + [2] * 5


def test_frozen_params_unchanged(frozen_model, loader):
    before = {name: p.detach().clone() for name, p in frozen_model.named_parameters()}

    training.train_classifier(frozen_model, loader, epochs=2, device="cpu", progress=False)
    after = dict(frozen_model.named_parameters())

    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert [name for name in changed if name.startswith("features.")] == []
    assert sorted(changed) == ["classifier.1.bias", "classifier.1.weight"]


def test_loss_decreases(frozen_model, loader):
    history = training.train_classifier(frozen_model, loader, epochs=20, lr=1e-2, device="cpu", progress=False)

    assert np.mean(history["loss"][-5:]) < np.mean(history["loss"][:5])


def test_no_trainable_params_raises(loader):
    model = TinyNet().requires_grad_(False)

    with pytest.raises(ValueError, match="requires grad"):
        training.train_classifier(model, loader, device="cpu", progress=False)


def test_invalid_max_steps_raises(frozen_model, loader):
    with pytest.raises(ValueError, match="max_steps"):
        training.train_classifier(frozen_model, loader, max_steps=0, device="cpu", progress=False)


def test_evaluate_accuracy(loader):
    # Labels cycle through 0..9, so a model that always predicts 0 is right for 1 in 10.
    accuracy = training.evaluate(ConstantClassifier(), loader, device="cpu", progress=False)

    assert accuracy == pytest.approx(0.1)


@pytest.mark.parametrize("training_mode", [True, False])
def test_evaluate_restores_mode(frozen_model, loader, training_mode):
    frozen_model.train(training_mode)

    training.evaluate(frozen_model, loader, device="cpu", progress=False)

    assert frozen_model.training is training_mode


def test_evaluate_empty_loader_raises(frozen_model):
    empty = DataLoader(TensorDataset(torch.empty(0, 1, 8, 8), torch.empty(0, dtype=torch.long)))

    with pytest.raises(ValueError, match="no samples"):
        training.evaluate(frozen_model, empty, device="cpu", progress=False)


@pytest.mark.parametrize(
    "environment, cuda, bounded",
    [
        ({"NBGRADER_EXECUTION": "autograde"}, True, True),
        ({"CI": "true"}, True, True),
        ({}, False, True),
        ({}, True, False),
        ({"CI": ""}, True, False),
    ],
    ids=["nbgrader", "ci", "cpu-only", "gpu", "ci-empty"],
)
def test_training_budget_choice(monkeypatch, environment, cuda, bounded):
    for variable in training.BOUNDED_RUN_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)

    budget = training.training_budget()

    assert budget.bounded is bounded
    assert budget.reason != ""


def test_bounded_budget_consistent():
    budget = training.BOUNDED_BUDGET

    assert budget.max_steps * budget.batch_size <= budget.train_samples
    assert budget.epochs == 1


def test_seed_everything_repeats_draws():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    training.seed_everything(7)
    first = draw()
    training.seed_everything(7)
    second = draw()

    assert first == second


def test_plot_history_curves():
    history = {"step": [1, 2, 3], "epoch": [1, 1, 1], "loss": [2.0, 1.5, 1.0], "accuracy": [0.1, 0.4, 0.5]}

    figure = training.plot_history(history)
    loss_axis, accuracy_axis = figure.axes

    assert isinstance(figure, Figure)
    assert loss_axis.lines[0].get_ydata().tolist() == history["loss"]
    assert accuracy_axis.lines[0].get_ydata().tolist() == history["accuracy"]


@pytest.mark.parametrize("font, loss_label", [(None, "loss"), ("DejaVu Sans", "손실")], ids=["english", "korean"])
def test_plot_history_labels(monkeypatch, font, loss_label):
    monkeypatch.setattr(training, "korean_font_family", lambda: font)
    history = {"step": [1, 2], "loss": [2.0, 1.0], "accuracy": [0.1, 0.5]}

    loss_axis = training.plot_history(history).axes[0]

    assert loss_axis.get_ylabel() == loss_label


def test_plot_history_empty_raises():
    with pytest.raises(ValueError, match="no steps"):
        training.plot_history({"step": [], "loss": [], "accuracy": []})
