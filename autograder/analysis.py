"""Build a student's VGG11 once, export it and keep its traces for every check that needs them.

The model is first built and exported on the ``meta`` device: shapes and the op sequence come out
the same, but no 0.5 GB of weights is initialised (about 1.7 s per model on 2 CPU cores).
When the student's code does not run on ``meta`` (for example, it reads a tensor's value in
``__init__``), the model is built again on the CPU.
"""

import logging
import re
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from . import reference
from .trace import export_model, export_until_error, program_outputs, trace_program, trace_until_error
from .verdict import Finding

log = logging.getLogger(__name__)

# The train-mode trace uses two samples, enough to see whether flattening keeps the batch
# dimension. The eval-mode program, which the equivalence check runs on real numbers, uses one,
# because a VGG11 forward pass costs about 0.6 s per 224x224 sample on two CPU cores.
BATCH = 2
EVAL_BATCH = 1

CACHE_SIZE = 2
_cache = {}


@dataclass
class ModelAnalysis:
    """A built model with its train-mode trace (every layer, dropout included) and eval-mode program."""

    model: nn.Module | None = None
    train_program: object = None
    train_ops: list = field(default_factory=list)
    eval_program: object = None
    eval_ops: list = field(default_factory=list)
    output_shape: tuple | None = None
    problem: Finding | None = None
    device: str = "meta"
    # True when forward raised. The programs then compute the part before the error, and train_ops
    # and eval_ops end with the op that raised, which failed_ops also contains per mode.
    crashed: bool = False
    failed_ops: dict = field(default_factory=dict)
    # Parameters that forward created or replaced, grouped by the kind of layer that contains them:
    # "linear" for the classifier, "other" for the convolutional part.
    rebuilt: dict = field(default_factory=dict)


def example_input(batch=BATCH, seed=0, device="cpu"):
    if device == "meta":
        return torch.empty(batch, 3, reference.INPUT_SIZE, reference.INPUT_SIZE, device="meta")
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, reference.INPUT_SIZE, reference.INPUT_SIZE, generator=generator)


_CHANNELS = re.compile(r"to have (\d+) channels, but got (\d+) channels")


def _error_finding(check, key, error, **fields):
    text = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
    if isinstance(error, (AssertionError, RuntimeError)) and ("CUDA" in text or "NVIDIA" in text):
        return Finding(check, "build.cuda", {"error": text})
    channels = _CHANNELS.search(text)
    if channels and channels.group(2) == "3":
        return Finding(check, "run.input_channels", {"actual": channels.group(1)})
    return Finding(check, key, {"error_type": type(error).__name__, "error": f": {text}" if text else "", **fields})


def _build(model_cls, num_classes, check, device):
    call = "VGG11()" if num_classes is None else f"VGG11(num_classes={num_classes})"
    if not (isinstance(model_cls, type) and issubclass(model_cls, nn.Module)):
        return None, Finding(check, "build.not_module", {"name": "VGG11", "actual": repr(model_cls)[:80]})
    try:
        torch.manual_seed(0)
        with torch.device(device):
            model = model_cls() if num_classes is None else model_cls(num_classes=num_classes)
        model = model.to(device)
    except Exception as error:  # noqa: BLE001 - any failure of student code becomes a finding
        return None, _error_finding(check, "build.error", error, call=call)
    return model, None


def _parameter_identity(model):
    return {name: (id(param), tuple(param.shape)) for name, param in model.named_parameters()}


def _export(model, mode, check, device, batch):
    getattr(model, mode)()
    x = example_input(batch, device=device)
    try:
        program = export_model(model, x)
    except Exception as error:  # noqa: BLE001
        log.debug("export in %s mode failed", mode, exc_info=True)
        return None, _error_finding(check, "run.error", error, shape=tuple(x.shape))
    outputs = program_outputs(program)
    if not program.call_spec.out_spec.is_leaf():
        return None, Finding(check, "run.not_tensor", {"actual": f"{type(outputs).__name__} ({len(outputs)})"})
    return program, None


class Recorded:
    """A model known only from what a kernel handed in (see ``judge``), not from its class.

    ``analyse`` returns its ``ModelAnalysis`` instead of building anything.
    """

    def analysis(self, check, num_classes=None):
        raise NotImplementedError


def analyse(model_cls, check, num_classes=None, device="meta"):
    """Build ``model_cls`` and trace it in train and eval mode. The result is cached per class.

    A ``Recorded`` model returns its own analysis, whatever the ``device``.
    """
    if isinstance(model_cls, Recorded):
        return model_cls.analysis(check, num_classes)
    cache_key = (model_cls, num_classes, device)
    if cache_key in _cache:
        cached = _cache[cache_key]
        if cached.problem is not None:
            cached.problem.check = check
        return cached

    analysis = _analyse_on(model_cls, check, num_classes, device)
    if analysis.problem is not None and device == "meta" and not _layer_shape_error(analysis):
        log.debug("meta-device analysis failed (%s); building on the CPU", analysis.problem.key)
        analysis = _analyse_on(model_cls, check, num_classes, "cpu")

    # A VGG11 has about 0.5 GB of parameters: keep the default model and one variant at most.
    while len(_cache) >= CACHE_SIZE:
        _cache.pop(next(iter(_cache)))
    _cache[cache_key] = analysis
    return analysis


def _layer_shape_error(analysis):
    """Return True when forward raised inside a layer (such as a Linear given the wrong width), which
    fails the same way on every device, so building on the CPU again would only cost time."""
    if not analysis.crashed or not analysis.train_ops:
        return False
    last = analysis.train_ops[-1]
    return last.out_shape is None and last.kind in ("conv", "linear", "batchnorm", "maxpool", "avgpool")


def _analyse_on(model_cls, check, num_classes, device):
    analysis = ModelAnalysis(device=device)
    analysis.model, analysis.problem = _build(model_cls, num_classes, check, device)
    if analysis.problem is None:
        before = _parameter_identity(analysis.model)
        train_program, analysis.problem = _export(analysis.model, "train", check, device, BATCH)
        analysis.rebuilt = _rebuilt_parameters(analysis.model, before)
        if train_program is None and analysis.problem.key in ("run.error", "run.input_channels"):
            _trace_crash(analysis, device)
        if train_program is not None:
            analysis.train_program = train_program
            analysis.train_ops = trace_program(train_program)
            analysis.output_shape = program_output_shape(train_program)
            analysis.eval_program, analysis.problem = _export(analysis.model, "eval", check, device, EVAL_BATCH)
    if analysis.eval_program is not None:
        analysis.eval_ops = ops_with_failure(analysis.eval_program, analysis.failed_ops.get("eval"))
    return analysis


def ops_with_failure(program, failed_op):
    """Return the ops of ``program``, followed by the op that raised after them, if any."""
    return trace_program(program) + ([failed_op] if failed_op is not None else [])


def _trace_crash(analysis, device):
    """Keep the part of a forward pass that runs before it raises, as programs in train and eval mode."""
    analysis.crashed = True
    model = analysis.model
    for mode, batch in (("train", BATCH), ("eval", EVAL_BATCH)):
        getattr(model, mode)()
        program, analysis.failed_ops[mode] = export_until_error(model, example_input(batch, device=device))
        setattr(analysis, f"{mode}_program", program)
    if analysis.train_program is not None:
        analysis.train_ops = ops_with_failure(analysis.train_program, analysis.failed_ops["train"])
    else:
        # NOTE: the eager trace cannot be handed in (see handin.analysis_record), so the judge receives
        # only the failed op of such a model and fails its convolutional part.
        analysis.train_ops = trace_until_error(model.train(), example_input(BATCH, device=device))


def _rebuilt_parameters(model, before):
    """Group the parameters that running forward added or replaced by the kind of module holding them."""
    after = _parameter_identity(model)
    changed = sorted({name for name, _ in set(before.items()) ^ set(after.items())})
    rebuilt = {}
    for name in changed:
        owner = name.rsplit(".", 1)[0] if "." in name else ""
        try:
            module = model.get_submodule(owner)
        except AttributeError:
            module = None
        rebuilt.setdefault("linear" if isinstance(module, nn.Linear) else "other", []).append(name)
    return rebuilt


def rebuilt_finding(analysis, check, kind):
    names = analysis.rebuilt.get(kind)
    if not names:
        return None
    return Finding(check, "run.params_changed", {"names": ", ".join(names[:3])})


def program_output_shape(program):
    output = program_outputs(program)[0]
    return tuple(output.meta["val"].shape)


def clear_cache():
    _cache.clear()
