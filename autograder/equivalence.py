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
from .analysis import BATCH, EVAL_BATCH, example_input
from .trace import ADAPTIVE_POOLS, STRUCTURAL, program_outputs

log = logging.getLogger(__name__)

RTOL = 1e-4


class ProgramRunError(RuntimeError):
    """The exported program could not run on real tensors."""


@dataclass
class Comparison:
    """Maximum absolute difference and reference scale at each block, in eval and in train mode, and
    at the output of the classifier alone.

    A difference is None where the student's tensor is missing or has another shape. The classifier
    gets the reference's block-5 feature map in place of its own, so that a mistake in the
    convolutional part does not show in the classifier. Its difference is None when the student's
    block-5 feature map has another shape.
    """

    stages: list            # (difference, scale) per block, eval mode
    train_stages: list      # (difference, scale) per block, train mode (BatchNorm with batch statistics)
    output: tuple           # (difference, scale) of the classifier


# Seeds of the reference weights and of the input. The judge draws new ones for every notebook, so
# that a kernel cannot compute the expected values in advance and hand in a graph that returns them.
DEFAULT_SEEDS = (1234, 0)
_seeds = DEFAULT_SEEDS
_reference_models = {}


def set_seeds(weights_seed, input_seed):
    """Use other seeds for the reference weights and the input from now on."""
    global _seeds
    _seeds = (weights_seed, input_seed)
    _reference_models.clear()


def _reference_model(num_classes):
    """Return a fresh copy of the seeded reference model (built once per process and seed)."""
    if num_classes not in _reference_models:
        _reference_models[num_classes] = _build_reference_model(num_classes, _seeds[0])
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


class _FeedBlock5(torch.fx.Interpreter):
    """Run a graph on the CPU, keep every node's value, and give the node ``name`` the tensor ``value``
    in place of its own, which goes to ``original``.

    A program exported on the ``meta`` device creates its new tensors (a hand-written dropout mask,
    for example) there, so every ``device`` argument becomes the CPU.
    """

    def __init__(self, graph_module, name, value):
        super().__init__(graph_module, garbage_collect_values=False)
        self.name, self.value, self.original = name, value, None

    def call_function(self, target, args, kwargs):
        if "device" in kwargs:
            kwargs = {**kwargs, "device": torch.device("cpu")}
        return super().call_function(target, args, kwargs)

    def run_node(self, node):
        result = super().run_node(node)
        if node.name != self.name:
            return result
        self.original = result
        return self.value


def _run_program(program, state, x, block5=None, block5_value=None):
    """Run the exported graph with ``state`` as its parameters and return every node's value by name.

    With ``block5``, that node's value is replaced by ``block5_value`` for the rest of the graph, and
    the returned values keep the node's own value.
    """
    args = []
    for spec in program.graph_signature.input_specs:
        if spec.kind == InputKind.USER_INPUT:
            args.append(x)
        elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
            args.append(state[spec.target])
        else:
            args.append(program.constants[spec.target])
    interpreter = _FeedBlock5(program.graph_module, block5, block5_value)
    try:
        with torch.no_grad():
            interpreter.run(*args)
    except Exception as error:  # noqa: BLE001 - a program traced on meta may hold meta-device constants
        raise ProgramRunError(f"{type(error).__name__}: {error}") from error
    values = {node.name: value for node, value in interpreter.env.items()}
    if block5 is not None:
        values[block5] = interpreter.original
    return values


def _difference(student, ref):
    if not isinstance(student, torch.Tensor) or tuple(student.shape) != tuple(ref.shape):
        return None
    return float((student - ref).abs().max())


def _block_nodes(ops):
    """Return the graph node of the tensor that leaves each block, read where the next layer takes it,
    or [] when the convolutional part does not have VGG11's eight convs.

    For blocks 1 to 4 that is the input of the next block's first conv, which also accepts a ReLU
    applied after the pool. For block 5 it is the last 4-D feature map before fc1 (or before the end
    of a forward pass that raised earlier), so that a wrong flatten order shows in the classifier,
    not in block 5. An adaptive pool after block 5 belongs to the classifier, as in ``checks``.
    """
    first_linear = next((index for index, op in enumerate(ops) if op.kind == "linear"), len(ops))
    features = ops[:first_linear]
    convs = [op for op in features if op.kind == "conv"]
    if len(convs) != len(reference.conv_names()):
        return []
    first_convs = [index + 1 for index in reference.block_ends()[:-1]]
    nodes = [convs[index].source for index in first_convs]
    feature_maps = [op for op in features if op.kind in STRUCTURAL and op.kind not in ADAPTIVE_POOLS
                    and op.out_shape is not None and len(op.out_shape) == 4]
    nodes.append(feature_maps[-1].node if feature_maps else None)
    return nodes


def _reference_run(ref, x):
    """Run the reference model and return its output and the feature map after each of its pools."""
    pools = []
    hooks = [module.register_forward_hook(lambda _m, _i, out: pools.append(out.clone()))
             for module in ref.features if isinstance(module, nn.MaxPool2d)]
    with torch.no_grad():
        output = ref(x)
    for hook in hooks:
        hook.remove()
    return output, pools


def _stages(nodes, values, ref_pools):
    stages = []
    for node, ref_value in zip(nodes, ref_pools):
        student_value = values.get(node)
        if isinstance(student_value, torch.Tensor) and student_value.numel() == ref_value.numel():
            student_value = student_value.reshape(ref_value.shape)
        stages.append((_difference(student_value, ref_value), float(ref_value.abs().max())))
    return stages


def _initial_state(program):
    """Return the program's tensors by name. Those that no reference layer replaces (such as
    num_batches_tracked) keep their values, and on the meta device they have none, so they start at zero."""
    return {name: torch.zeros(tensor.shape, dtype=tensor.dtype) if tensor.is_meta else tensor.detach().clone()
            for name, tensor in program.state_dict.items()}


def compare_with_reference(analysis, num_classes=10, train_mode=True):
    """Return a ``Comparison``, or None when the convs and BatchNorm layers cannot be matched with the
    reference one to one, in the eval-mode or the train-mode program.

    With ``train_mode=False`` the train-mode program is not run and ``train_stages`` stays empty.
    """
    ref = _reference_model(num_classes)
    generator_seed = _seeds[1]

    state = _initial_state(analysis.eval_program)
    assigned = _assign_reference(analysis.eval_ops, ref, state)
    if assigned is None:
        return None
    x = example_input(EVAL_BATCH, seed=generator_seed)
    ref_output, ref_pools = _reference_run(ref.eval(), x)
    nodes = _block_nodes(analysis.eval_ops)
    block5 = nodes[-1] if nodes else None
    block5_shape = next((op.out_shape for op in analysis.eval_ops if op.node == block5), None)
    feed = block5 is not None and block5_shape == tuple(ref_pools[-1].shape) and "linear" in assigned
    values = _run_program(analysis.eval_program, state, x, block5 if feed else None, ref_pools[-1])
    stages = _stages(nodes, values, ref_pools)
    output_node = program_outputs(analysis.eval_program)[0]
    difference = _difference(values.get(output_node.name), ref_output) if feed else None
    output = (difference, float(ref_output.abs().max()))

    train_stages = []
    if train_mode and analysis.train_program is not None:
        state = _initial_state(analysis.train_program)
        if _assign_reference(analysis.train_ops, ref, state) is None:
            return None
        x = example_input(BATCH, seed=generator_seed + 1)
        _, ref_pools = _reference_run(ref.train(), x)
        values = _run_program(analysis.train_program, state, x)
        train_stages = _stages(_block_nodes(analysis.train_ops), values, ref_pools)
    return Comparison(stages, train_stages, output)


def close_enough(difference, scale):
    """Return True when ``difference`` is within ``RTOL`` of ``scale`` (and of 1 for tiny tensors)."""
    return difference is not None and difference <= RTOL * max(scale, 1.0)
