"""The graded checks of Assignment 1, one function per test cell.

Each check judges what the model is and computes, read from its exported forward pass, so every
correct style of writing VGG11 passes. A failing check raises ``CheckFailed`` whose message names
the layer or pool, with expected against actual. ``hidden=True`` adds the checks that only the
grader runs: equivalence with the reference VGG11 under shared weights, the ``num_classes``
argument, and one real optimizer step for the fine-tuned model.
"""

import copy
import logging

import torch
import torch.nn as nn

from . import reference
from .analysis import BATCH, Recorded, analyse, rebuilt_finding
from .equivalence import ProgramRunError, close_enough, compare_with_reference
from .sequence import expected_classifier, expected_features, first_difference, layer_from_op
from .stages import pool_stages
from .verdict import Finding, raise_if_failed

log = logging.getLogger(__name__)

LAYERS = "test_vgg11_layers"
POOL_SHAPES = "test_vgg11_pool_shapes"
CLASSIFIER = "test_vgg11_classifier"
FINETUNE = "test_finetune_frozen"

# A second class count for the hidden check that num_classes reaches the last Linear layer.
OTHER_NUM_CLASSES = 7


def shape_text(shape):
    """Write a traced shape with N for the batch dimension, or as it is when the batch was merged."""
    if not shape:
        return "-"
    if shape[0] != BATCH:
        return str(tuple(shape))
    return "(N, " + ", ".join(str(d) for d in shape[1:]) + ")"


def _expected_pool_text(block):
    return shape_text((BATCH, *reference.POOL_SHAPES[block - 1]))


def _split(ops):
    """Split structural ops into the convolutional part and the classifier (from the first Linear on)."""
    layers = [op for op in ops if op.structural]
    first_linear = next((i for i, op in enumerate(layers) if op.kind == "linear"), len(layers))
    features = [op for op in layers[:first_linear] if op.kind not in ("adaptive_avgpool", "adaptive_maxpool")]
    return features, layers[first_linear:]


def _crashed_in_classifier(analysis):
    """Return True when forward raised at or after the first Linear layer.

    The convolutional part then ran completely, and its trace can still be judged.
    """
    return analysis.crashed and any(op.kind == "linear" for op in analysis.train_ops)


def blocking_problem(analysis):
    """Return the build or run problem that prevents judging the convolutional part, if any."""
    if analysis.problem is None or _crashed_in_classifier(analysis):
        return None
    return analysis.problem


def _comparison(model_cls, analysis, num_classes=None):
    """Compare with the reference and return ``(comparison, finding)``: one of them is None.

    A program traced on ``meta`` that cannot run is traced again on the CPU. A handed-in model
    cannot be traced again, so its program must run as it is.
    """
    if not hasattr(analysis, "comparison"):
        analysis.comparison = _compare(model_cls, analysis, num_classes)
    return analysis.comparison


def _compare(model_cls, analysis, num_classes):
    if analysis.eval_program is None:
        return None, Finding(LAYERS, "features.not_compared")
    # The model built with another num_classes is compared at the classifier output only, because its
    # convolutional part was judged with the default model.
    reference_classes = num_classes or 10
    train_mode = num_classes is None
    try:
        comparison = compare_with_reference(analysis, reference_classes, train_mode)
    except ProgramRunError as error:
        if isinstance(model_cls, Recorded):
            return None, Finding(LAYERS, "features.not_runnable", {"error": str(error)[:300]})
        log.info("the meta-device program did not run on real tensors; tracing again on the CPU")
        try:
            comparison = compare_with_reference(analyse(model_cls, LAYERS, num_classes, device="cpu"), reference_classes,
                                               train_mode)
        except ProgramRunError as error_on_cpu:
            return None, Finding(LAYERS, "features.not_runnable", {"error": str(error_on_cpu)[:300]})
    if comparison is None:
        return None, Finding(LAYERS, "features.not_compared")
    return comparison, None


def _stage_finding(stages, mode):
    """Return the finding of the first block whose output differs from the reference's, or None."""
    if len(stages) != len(reference.POOL_SHAPES):
        return Finding(LAYERS, "features.not_compared")
    for block, (difference, scale) in enumerate(stages, start=1):
        if difference is None:
            return Finding(LAYERS, "features.mode_shape", {"block": block, "mode": mode})
        if not close_enough(difference, scale):
            key = "features.not_equivalent" if mode == "eval" else "features.train_not_equivalent"
            return Finding(LAYERS, key, {"block": block, "difference": difference})
    return None


# Convolutional part.

def layer_findings(model_cls, hidden=False):
    analysis = analyse(model_cls, LAYERS)
    if blocking_problem(analysis):
        return [analysis.problem]
    rebuilt = rebuilt_finding(analysis, LAYERS, "other")
    if rebuilt:
        return [rebuilt]
    features, _ = _split(analysis.train_ops)
    finding = first_difference(LAYERS, expected_features(), [layer_from_op(op) for op in features])
    if finding:
        return [finding]
    if hidden:
        comparison, unchecked = _comparison(model_cls, analysis)
        if unchecked:
            return [unchecked]
        finding = _stage_finding(comparison.stages, "eval") or _stage_finding(comparison.train_stages, "train")
        if finding:
            return [finding]
    return []


def check_vgg11_layers(model_cls, hidden=False):
    """Check the convolutional layers in order: Conv2d(3x3, padding 1), BatchNorm2d, ReLU, MaxPool2d(2, 2)."""
    raise_if_failed(LAYERS, layer_findings(model_cls, hidden))


# Shapes after the five pools.

def pool_findings(model_cls, hidden=False):
    analysis = analyse(model_cls, POOL_SHAPES)
    if blocking_problem(analysis):
        return [analysis.problem]
    stages = pool_stages(analysis.train_ops)
    pooled = sum(stage.pooled for stage in stages)
    for stage, want in zip(stages, reference.POOL_SHAPES):
        expected = (BATCH, *want)
        fields = {"block": stage.block, "expected": _expected_pool_text(stage.block)}
        if stage.shape is None:
            return [Finding(POOL_SHAPES, "pools.missing", {**fields, "count": pooled}, "hint.pool", {"block": stage.block})]
        if stage.shape == expected:
            continue
        key = "pools.wrong_shape" if stage.pooled else "pools.no_pool"
        return [Finding(POOL_SHAPES, key, {**fields, "actual": shape_text(stage.shape)}, "hint.pool",
                        {"block": stage.block})]
    return []


def check_vgg11_pool_shapes(model_cls, hidden=False):
    """Check the feature map after each pool for a 224x224 input: 112, 56, 28, 14, 7."""
    raise_if_failed(POOL_SHAPES, pool_findings(model_cls, hidden))


# Classifier.

def _fc1_input_finding(classifier_ops):
    fc1 = classifier_ops[0]
    if fc1.in_shape is None:
        return None
    expected = f"(N, {reference.FLATTENED_FEATURES})"
    if fc1.in_shape[0] != BATCH:
        return Finding(CLASSIFIER, "classifier.batch_merged",
                       {"expected": expected, "actual": f"({fc1.in_shape[0]}, {fc1.in_shape[-1]}) (N={BATCH})"})
    if fc1.out_shape is None and fc1.in_shape[-1] != fc1.params.get("in_features"):
        # forward raised here: the Linear layer did not accept the flattened feature map
        return Finding(CLASSIFIER, "classifier.fc_input",
                       {"expected": expected, "actual": shape_text(fc1.in_shape),
                        "in_features": fc1.params.get("in_features")})
    return None


def _num_classes_finding(model_cls, compared):
    analysis = analyse(model_cls, CLASSIFIER, num_classes=OTHER_NUM_CLASSES)
    if analysis.problem:
        return analysis.problem
    expected = (BATCH, OTHER_NUM_CLASSES)
    if analysis.output_shape != expected:
        return Finding(CLASSIFIER, "classifier.num_classes_ignored",
                       {"num_classes": OTHER_NUM_CLASSES, "expected": shape_text(expected),
                        "actual": shape_text(analysis.output_shape)})
    if not compared:
        return None
    # Where the default model's classifier was compared, the model built with num_classes=7 must
    # compute the 7-class VGG11 as well, not only return its shape.
    comparison, unchecked = _comparison(model_cls, analysis, OTHER_NUM_CLASSES)
    if unchecked is not None or comparison.output[0] is None:
        return Finding(CLASSIFIER, "classifier.num_classes_not_compared", {"num_classes": OTHER_NUM_CLASSES})
    if not close_enough(*comparison.output):
        return Finding(CLASSIFIER, "classifier.not_equivalent", {"difference": comparison.output[0]})
    return None


def classifier_findings(model_cls, hidden=False):
    analysis = analyse(model_cls, CLASSIFIER)
    if blocking_problem(analysis):
        return [analysis.problem]
    rebuilt = rebuilt_finding(analysis, CLASSIFIER, "linear")
    if rebuilt:
        return [rebuilt]
    _, classifier = _split(analysis.train_ops)
    if not classifier:
        return [Finding(CLASSIFIER, "classifier.no_linear")]
    fc1_input = _fc1_input_finding(classifier)
    if fc1_input:
        return [fc1_input]
    if analysis.problem:
        return [analysis.problem]
    finding = first_difference(CLASSIFIER, expected_classifier(), [layer_from_op(op) for op in classifier])
    if finding:
        return [finding]
    expected = (BATCH, 10)
    if analysis.output_shape != expected:
        return [Finding(CLASSIFIER, "classifier.output_shape",
                        {"expected": shape_text(expected), "actual": shape_text(analysis.output_shape)})]
    if not hidden:
        return []

    comparison, unchecked = _comparison(model_cls, analysis)
    if unchecked is not None and unchecked.key == "features.not_runnable":
        return [Finding(CLASSIFIER, unchecked.key, unchecked.fields)]
    # NOTE: a classifier that follows a block-5 feature map of another shape is judged on its layer
    # sequence alone, because the reference's feature map cannot be fed into it.
    if comparison is not None and comparison.output[0] is not None and not close_enough(*comparison.output):
        return [Finding(CLASSIFIER, "classifier.not_equivalent", {"difference": comparison.output[0]})]
    finding = _num_classes_finding(model_cls, comparison is not None and comparison.output[0] is not None)
    return [finding] if finding else []


def check_vgg11_classifier(model_cls, hidden=False):
    """Check the classifier: Linear(25088, 4096), ReLU, Dropout, Linear(4096, 4096), ReLU, Dropout, Linear(4096, 10)."""
    raise_if_failed(CLASSIFIER, classifier_findings(model_cls, hidden))


# Fine-tuning.

def _names(names, limit=3):
    listed = ", ".join(names[:limit])
    return listed + (f" … (+{len(names) - limit})" if len(names) > limit else "")


def finetune_facts(model):
    """Return what the fine-tuning check reads from ``model``, as plain data that can be handed in.

    ``parameters`` lists (name, requires_grad) of ``features`` and ``classifier``; ``head`` describes
    ``classifier[6]`` as (type name, in_features, out_features).
    """
    if model is None or not isinstance(model, nn.Module):
        return {"module": False, "repr": repr(model)[:80]}
    facts = {"module": True, "type": type(model).__name__}
    if not isinstance(getattr(model, "features", None), nn.Module) or \
            not isinstance(getattr(model, "classifier", None), nn.Sequential):
        return {**facts, "vgg": False}
    head = model.classifier[6] if len(model.classifier) > 6 else None
    linear = isinstance(head, nn.Linear)
    return {
        **facts,
        "vgg": True,
        "head": [type(head).__name__, head.in_features if linear else None, head.out_features if linear else None],
        "parameters": [[f"features.{name}", p.requires_grad] for name, p in model.features.named_parameters()]
        + [[f"classifier.{name}", p.requires_grad] for name, p in model.classifier.named_parameters()],
        "typo": any(hasattr(p, "require_grad") for p in model.parameters()),
    }


def _head_text(head):
    kind, fan_in, fan_out = head
    return f"Linear({fan_in}, {fan_out})" if kind == "Linear" else kind


def structure_findings(facts):
    """Findings of ``test_finetune_frozen`` from ``finetune_facts``: model type, head and frozen parameters."""
    if not facts.get("module"):
        return [Finding(FINETUNE, "finetune.missing", {"actual": facts.get("repr", "")})]
    if not facts.get("vgg"):
        return [Finding(FINETUNE, "finetune.not_vgg", {"actual": facts.get("type", "")})]
    findings = []
    if tuple(facts["head"]) != ("Linear", 4096, 10):
        findings.append(Finding(FINETUNE, "finetune.head", {"actual": _head_text(facts["head"])}))

    parameters = facts["parameters"]
    trainable = [name for name, grad in parameters if name.startswith("features.") and grad]
    if trainable:
        findings.append(Finding(FINETUNE, "finetune.features_trainable",
                                {"count": len(trainable), "names": _names(trainable)},
                                "finetune.typo" if facts.get("typo") else None))
    frozen = [name for name, grad in parameters if name.startswith("classifier.") and not grad]
    if frozen:
        findings.append(Finding(FINETUNE, "finetune.classifier_frozen", {"count": len(frozen), "names": _names(frozen)}))
    return findings


def _step_findings(model):
    """Take one SGD step on a copy of the model; features must stay bit-identical, the classifier must move."""
    trial = copy.deepcopy(model).cpu().train()
    before = {name: p.detach().clone() for name, p in trial.named_parameters()}
    generator = torch.Generator().manual_seed(0)
    # torchvision's VGG pools adaptively to 7x7, so a 64x64 input exercises every layer cheaply.
    x = torch.randn(2, 3, 64, 64, generator=generator)
    target = torch.tensor([1, 2])
    try:
        optimizer = torch.optim.SGD([p for p in trial.parameters() if p.requires_grad], lr=0.1)
        loss = nn.functional.cross_entropy(trial(x), target)
        loss.backward()
        optimizer.step()
    except Exception as error:  # noqa: BLE001 - student code
        return [Finding(FINETUNE, "finetune.step_error", {"error_type": type(error).__name__, "error": str(error)[:200]})]

    after = dict(trial.named_parameters())
    moved = [name for name in before if name.startswith("features.") and not torch.equal(before[name], after[name])]
    still = [name for name in before if name.startswith("classifier.") and name.endswith("weight")
             and torch.equal(before[name], after[name])]
    findings = []
    if moved:
        findings.append(Finding(FINETUNE, "finetune.step_features_changed", {"names": _names(moved)}))
    if still:
        findings.append(Finding(FINETUNE, "finetune.step_classifier_unchanged", {"names": _names(still)}))
    return findings


def finetune_findings(model, hidden=False):
    """Findings for the fine-tuned model. A handed-in ``RecordedFinetune`` (see ``judge``) brings its facts
    and its own step check."""
    if isinstance(model, RecordedFinetune):
        findings = structure_findings(model.facts)
        return model.step_findings() if hidden and not findings else findings
    findings = structure_findings(finetune_facts(model))
    if hidden and not findings:
        findings = _step_findings(model)
    return findings


class RecordedFinetune:
    """A fine-tuned model known only from its handed-in facts and, where it has one, its program (see ``judge``)."""

    def __init__(self, facts, step=None):
        self.facts = facts
        self._step = step

    def step_findings(self):
        return self._step() if self._step else []


def check_finetune_frozen(model, hidden=False):
    """Check the fine-tuning set-up: features frozen, classifier trainable, classifier[6] is Linear(4096, 10)."""
    raise_if_failed(FINETUNE, finetune_findings(model, hidden))
