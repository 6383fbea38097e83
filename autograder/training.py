"""Training, evaluation and plotting helpers for the VGG11 fine-tuning part."""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass, replace

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from autograder.data import korean_font_family

logger = logging.getLogger(__name__)

# Environment variables that mark an automated run: nbgrader sets NBGRADER_EXECUTION
# while it autogrades or validates a notebook, and CI services set CI.
BOUNDED_RUN_VARIABLES = ("NBGRADER_EXECUTION", "CI")


@dataclass(frozen=True)
class TrainingBudget:
    """Data size and training length for the fine-tuning part.

    ``train_samples``, ``test_samples`` and ``max_steps`` are None for "no limit".
    ``reason`` explains why ``training_budget`` chose this budget.
    """

    train_samples: int | None
    test_samples: int | None
    batch_size: int
    epochs: int
    max_steps: int | None
    image_size: int = 224
    bounded: bool = True
    reason: str = ""


# A bounded run checks that training works end to end; its accuracy means little.
# At 224x224 a training step with batch 32 took 4.2 s and evaluation 0.11 s per image
# on a 2-core AMD EPYC (Zen 4) VM with torch 2.14, which is too slow to repeat for
# every graded submission. torchvision's VGG11 pools adaptively to 7x7, so it also
# runs on 64x64 images. There a step still takes about 2.4 s, spent mostly in the
# 120M classifier parameters (forward, backward and the Adam update), and evaluating
# 128 images about 4 s: four steps and the evaluation take about 15 s.
BOUNDED_BUDGET = TrainingBudget(
    train_samples=128,
    test_samples=128,
    batch_size=32,
    epochs=1,
    max_steps=4,
    image_size=64,
    bounded=True,
)

# NOTE: two epochs over the full 60,000 images is an estimate of what one GPU
# session can afford. It has not been timed on a GPU.
FULL_BUDGET = TrainingBudget(
    train_samples=None,
    test_samples=None,
    batch_size=64,
    epochs=2,
    max_steps=None,
    bounded=False,
)


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and every GPU), and make cuDNN deterministic.

    ``torch.use_deterministic_algorithms`` stays off because on a GPU it requires
    the CUBLAS_WORKSPACE_CONFIG environment variable and makes some kernels raise.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def training_budget() -> TrainingBudget:
    """Choose the training budget for this machine.

    The budget is ``BOUNDED_BUDGET`` when NBGRADER_EXECUTION or CI is set to a
    non-empty value, or when ``torch.cuda.is_available()`` is False. Otherwise it
    is ``FULL_BUDGET``.
    """
    for variable in BOUNDED_RUN_VARIABLES:
        if os.environ.get(variable):
            return replace(BOUNDED_BUDGET, reason=f"{variable} is set")
    if not torch.cuda.is_available():
        return replace(BOUNDED_BUDGET, reason="no CUDA GPU")
    return replace(FULL_BUDGET, reason="CUDA GPU available")


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def train_classifier(
    model: nn.Module,
    train_loader: DataLoader,
    epochs: int = 1,
    max_steps: int | None = None,
    lr: float = 1e-3,
    device: str | torch.device | None = None,
    *,
    progress: bool = True,
) -> dict[str, list]:
    """Train the parameters of ``model`` that require grad with Adam and cross-entropy loss.

    Training stops after ``epochs`` passes over ``train_loader`` or after
    ``max_steps`` optimizer steps in total, whichever comes first. ``device``
    defaults to CUDA when available, and the model is moved there.

    Returns the history ``{"step": [...], "epoch": [...], "loss": [...],
    "accuracy": [...]}`` with one entry per step. ``step`` counts from 1, and
    ``loss`` and ``accuracy`` are measured on that step's training batch.
    Raises ValueError when no parameter requires grad.
    """
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    if not trainable:
        raise ValueError(
            "train_classifier: requires_grad=True인 파라미터가 없어 학습할 것이 없습니다. "
            "features만 고정하고 classifier는 학습되게 두세요. / "
            "no parameter of the model requires grad, so there is nothing to train. "
            "Freeze only features and leave the classifier trainable."
        )
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be a positive number of steps or None, got {max_steps}")

    device = _resolve_device(device)
    model.to(device)
    model.train()
    optimizer = torch.optim.Adam(trainable, lr=lr)
    loss_function = nn.CrossEntropyLoss()

    # The bar has no total for a loader without len(), such as one over an IterableDataset.
    try:
        bar_total = epochs * len(train_loader)
    except TypeError:
        bar_total = None
    if max_steps is not None:
        bar_total = max_steps if bar_total is None else min(bar_total, max_steps)

    history: dict[str, list] = {"step": [], "epoch": [], "loss": [], "accuracy": []}
    step = 0
    with tqdm(total=bar_total, desc="train", disable=not progress) as bar:
        for epoch in range(1, epochs + 1):
            for images, labels in train_loader:
                images = images.to(device)
                labels = labels.to(device)

                optimizer.zero_grad(set_to_none=True)
                logits = model(images)
                loss = loss_function(logits, labels)
                loss.backward()
                optimizer.step()

                step += 1
                loss_value = loss.item()
                accuracy = (logits.argmax(dim=1) == labels).float().mean().item()
                history["step"].append(step)
                history["epoch"].append(epoch)
                history["loss"].append(loss_value)
                history["accuracy"].append(accuracy)
                logger.debug("step %d epoch %d loss %.4f accuracy %.3f", step, epoch, loss_value, accuracy)

                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.3f}", acc=f"{accuracy:.2f}")
                if step == max_steps:
                    break
            if step == max_steps:
                break
    return history


def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: str | torch.device | None = None,
    *,
    progress: bool = True,
) -> float:
    """Return the fraction of samples in ``loader`` that ``model`` classifies correctly.

    The model runs in eval mode without gradients, and its previous train or eval
    mode is restored afterwards. Raises ValueError when ``loader`` yields no samples.
    """
    device = _resolve_device(device)
    was_training = model.training
    model.to(device)
    model.eval()

    correct = 0
    total = 0
    try:
        with torch.inference_mode():
            for images, labels in tqdm(loader, desc="evaluate", disable=not progress):
                images = images.to(device)
                labels = labels.to(device)
                predictions = model(images).argmax(dim=1)
                correct += (predictions == labels).sum().item()
                total += labels.numel()
    finally:
        model.train(was_training)

    if total == 0:
        raise ValueError("evaluate: the loader yielded no samples")
    return correct / total


def plot_history(history: dict[str, list]) -> Figure:
    """Draw the training loss and the training-batch accuracy against the step number.

    Axis labels are Korean only when a Korean font is installed, because
    matplotlib's default DejaVu fonts have no Hangul glyphs and would draw empty
    boxes. Raises ValueError for an empty history.
    """
    steps = history.get("step", [])
    if not steps:
        raise ValueError("plot_history: the history has no steps to plot")

    font_family = korean_font_family()
    if font_family is not None:
        labels = {"step": "스텝", "loss": "손실", "accuracy": "정확도 (학습 배치)"}
        text_style = {"fontfamily": font_family}
    else:
        labels = {"step": "step", "loss": "loss", "accuracy": "accuracy (training batch)"}
        text_style = {}

    figure = Figure(figsize=(10, 3.5), layout="constrained")
    loss_axis, accuracy_axis = figure.subplots(1, 2)

    loss_axis.plot(steps, history["loss"], marker="o", markersize=3)
    loss_axis.set_xlabel(labels["step"], **text_style)
    loss_axis.set_ylabel(labels["loss"], **text_style)
    loss_axis.grid(alpha=0.3)

    accuracy_axis.plot(steps, history["accuracy"], marker="o", markersize=3, color="tab:green")
    accuracy_axis.set_xlabel(labels["step"], **text_style)
    accuracy_axis.set_ylabel(labels["accuracy"], **text_style)
    accuracy_axis.set_ylim(0.0, 1.0)
    accuracy_axis.grid(alpha=0.3)
    return figure
