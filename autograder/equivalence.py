"""End-to-end equivalence: give the student's model the reference weights and compare what it computes.

The reference VGG11-BN gets seeded random weights and random BatchNorm running statistics. Its
convolution, BatchNorm and Linear parameters are copied, in the order the student's eval-mode
program executes those layers, into that program's inputs, which then runs on the same random
input as the reference. Working on the exported program keeps this free of the student's Python
code. Outputs must match within ``RTOL`` of the reference output's scale.
"""

import copy
import logging
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.export.graph_signature import InputKind

from . import reference
from .analysis import EVAL_BATCH, example_input
from .trace import ADAPTIVE_POOLS, STRUCTURAL, program_outputs

log = logging.getLogger(__name__)

RTOL = 1e-4


class ProgramRunError(RuntimeError):
    """The exported program could not run on real tensors."""


@dataclass
class Comparison:
    """Maximum absolute difference and reference scale at each pool stage and at the output.

    A difference is None where the student's tensor is missing or has another shape.
    """

    stages: list            # (difference, scale) per pool stage
    output: tuple           # (difference, scale)


_reference_models = {}


def _reference_model(num_classes, seed=1234):
    """Return a fresh copy of the seeded reference model (built once per process)."""
    if num_classes not in _reference_models:
        _reference_models[num_classes] = _build_reference_model(num_classes, seed)
    return copy.deepcopy(_reference_models[num_classes])


def _build_reference_model(num_classes, seed):
    torch.manual_seed(seed)
    model = reference.build_reference_vgg11(num_classes)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.1)
    return model.eval()


def _layers(model, kind):
    module_type = {"conv": nn.Conv2d, "batchnorm": nn.BatchNorm2d, "linear": nn.Linear}[kind]
    return [module for module in model.modules() if isinstance(module, module_type)]


def _assign_reference(ops, ref, state):
    """Fill ``state`` (FQN -> tensor) with reference tensors and return the kinds that were filled.

    Return None when the convolutions or BatchNorm layers do not line up with the reference one to
    one. Linear layers that do not line up are left out, so that the feature maps are still compared.
    """
    first_linear = next((index for index, op in enumerate(ops) if op.kind == "linear"), len(ops))
    assigned = set()
    for kind in ("conv", "batchnorm", "linear"):
        # The reference has BatchNorm2d in its features only, so a BatchNorm1d in the classifier is left out.
        part = ops if kind == "linear" else ops[:first_linear]
        if _assign_kind(part, ref, state, kind):
            assigned.add(kind)
        elif kind != "linear":
            return None
    return assigned


def _assign_kind(ops, ref, state, kind):
    student = [op for op in ops if op.kind == kind]
    ref_layers = _layers(ref, kind)
    if len(student) != len(ref_layers) or any(op.weights.get("weight") is None for op in student):
        return False
    values = {}
    for op, layer in zip(student, ref_layers):
        for role, name in op.weights.items():
            if name is None and role == "bias" and kind == "conv":
                continue  # a bias-free conv before BatchNorm matches the reference with a zero bias
            if name is None:
                return False
            value = getattr(layer, role).detach()
            if name not in state or tuple(state[name].shape) != tuple(value.shape):
                return False
            values[name] = value
        if kind == "conv" and op.weights.get("bias") is None:
            layer.bias.data.zero_()
    state.update(values)
    return True


def _run_program(program, state, x):
    """Run the exported graph with ``state`` as its parameters and return every node's value by name."""
    args = []
    for spec in program.graph_signature.input_specs:
        if spec.kind == InputKind.USER_INPUT:
            args.append(x)
        elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
            args.append(state[spec.target])
        else:
            args.append(program.constants[spec.target])
    interpreter = torch.fx.Interpreter(program.graph_module, garbage_collect_values=False)
    with torch.no_grad():
        interpreter.run(*args)
    return {node.name: value for node, value in interpreter.env.items()}


def _difference(student, ref):
    if not isinstance(student, torch.Tensor) or tuple(student.shape) != tuple(ref.shape):
        return None
    return float((student - ref).abs().max())


def _block_outputs(ops, values):
    """Return the tensor that leaves each block, read where the next layer takes it.

    For blocks 1 to 4 that is the input of the next block's first conv, which also accepts a ReLU
    applied after the pool. For block 5 it is the last 4-D feature map before fc1 (or before the end
    of a forward pass that raised earlier), so that a wrong flatten order shows in the classifier,
    not in block 5. An adaptive pool after block 5 belongs to the classifier, as in ``checks``.
    """
    convs = [op for op in ops if op.kind == "conv"]
    first_linear = next((index for index, op in enumerate(ops) if op.kind == "linear"), len(ops))
    if len(convs) != len(reference.conv_names()):
        return []
    first_convs = [index + 1 for index in reference.block_ends()[:-1]]
    outputs = [values.get(convs[index].source) for index in first_convs]
    feature_maps = [op for op in ops[:first_linear] if op.kind in STRUCTURAL and op.kind not in ADAPTIVE_POOLS
                    and op.out_shape is not None and len(op.out_shape) == 4]
    outputs.append(values.get(feature_maps[-1].node) if feature_maps else None)
    return outputs


def compare_with_reference(analysis, num_classes=10):
    """Return a ``Comparison``, or None when the layers cannot be matched with the reference one to one."""
    program = analysis.eval_program
    ref = _reference_model(num_classes)
    # Tensors that no reference layer replaces (such as num_batches_tracked) keep their values. On
    # the meta device they have none, so they start at zero.
    state = {name: torch.zeros(tensor.shape, dtype=tensor.dtype) if tensor.is_meta else tensor.detach().clone()
             for name, tensor in program.state_dict.items()}
    assigned = _assign_reference(analysis.eval_ops, ref, state)
    if assigned is None:
        return None

    ref_pools = []
    hooks = [module.register_forward_hook(lambda _m, _i, out: ref_pools.append(out.clone()))
             for module in ref.features if isinstance(module, nn.MaxPool2d)]
    x = example_input(EVAL_BATCH)
    with torch.no_grad():
        ref_output = ref(x)
    for hook in hooks:
        hook.remove()

    try:
        values = _run_program(program, state, x)
    except Exception as error:  # noqa: BLE001 - a program traced on meta may hold meta-device constants
        raise ProgramRunError(f"{type(error).__name__}: {error}") from error
    stages = []
    for student_value, ref_value in zip(_block_outputs(analysis.eval_ops, values), ref_pools):
        if isinstance(student_value, torch.Tensor) and student_value.numel() == ref_value.numel():
            student_value = student_value.reshape(ref_value.shape)
        stages.append((_difference(student_value, ref_value), float(ref_value.abs().max())))

    output_node = program_outputs(program)[0]
    difference = _difference(values.get(output_node.name), ref_output) if "linear" in assigned else None
    output = (difference, float(ref_output.abs().max()))
    return Comparison(stages, output)


def close_enough(difference, scale):
    """Return True when ``difference`` is within ``RTOL`` of ``scale`` (and of 1 for tiny tensors)."""
    return difference is not None and difference <= RTOL * max(scale, 1.0)
