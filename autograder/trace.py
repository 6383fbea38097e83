"""Operation-level trace of a model's forward pass, read from a ``torch.export`` graph.

``torch.export.export(model, (x,), strict=False)`` records every aten operation that the forward
pass executes, whether it came from an ``nn.ReLU`` module or an ``F.relu`` call, so module and
functional styles give the same trace. The trace is read from the ``ExportedProgram`` alone (graph
nodes, their shape metadata and the graph signature), so it can be taken from a program that was
saved with ``torch.export.save`` in another process without running the student's Python code.
"""

from dataclasses import dataclass, field

import contextlib
import functools
import logging

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

# aten overload packet name -> trace kind. Names missing here become "other".
_KINDS = {
    "conv2d": "conv", "convolution": "conv", "_convolution": "conv", "conv1d": "conv1d", "conv3d": "conv3d",
    "batch_norm": "batchnorm", "_native_batch_norm_legit_functional": "batchnorm",
    "_native_batch_norm_legit_no_training": "batchnorm", "native_batch_norm": "batchnorm",
    "layer_norm": "layernorm", "group_norm": "groupnorm", "instance_norm": "instancenorm",
    "relu": "relu", "relu_": "relu",
    "leaky_relu": "activation", "leaky_relu_": "activation", "gelu": "activation", "silu": "activation",
    "silu_": "activation", "elu": "activation", "elu_": "activation", "sigmoid": "activation",
    "tanh": "activation", "hardtanh": "activation", "hardtanh_": "activation",
    "max_pool2d": "maxpool", "max_pool2d_with_indices": "maxpool",
    "avg_pool2d": "avgpool",
    "adaptive_avg_pool2d": "adaptive_avgpool", "_adaptive_avg_pool2d": "adaptive_avgpool",
    "adaptive_max_pool2d": "adaptive_maxpool",
    "linear": "linear", "addmm": "linear", "mm": "linear",
    "_native_batch_norm_legit": "batchnorm",
    "dropout": "dropout", "native_dropout": "dropout", "feature_dropout": "dropout",
    "alpha_dropout": "dropout", "bernoulli": "dropout", "bernoulli_": "dropout",
    "rand_like": "dropout", "rand": "dropout",
    "softmax": "softmax", "_softmax": "softmax", "log_softmax": "softmax", "_log_softmax": "softmax",
    "view": "reshape", "reshape": "reshape", "flatten": "reshape", "_unsafe_view": "reshape",
    "mean": "mean",
}

# Kinds that make up the architecture. Reshapes, elementwise arithmetic and bookkeeping
# (such as BatchNorm's num_batches_tracked += 1) are left out of layer comparisons.
STRUCTURAL = {
    "conv", "conv1d", "conv3d", "batchnorm", "layernorm", "groupnorm", "instancenorm",
    "relu", "activation", "maxpool", "avgpool", "adaptive_avgpool", "adaptive_maxpool",
    "linear", "dropout", "softmax", "mean",
}
ADAPTIVE_POOLS = {"adaptive_avgpool", "adaptive_maxpool"}
POOLS = {"maxpool", "avgpool", *ADAPTIVE_POOLS}


@dataclass
class Op:
    """One executed operation: its kind, hyper-parameters, shapes and the parameters it reads."""

    kind: str
    target: str
    node: str                 # graph node name of the op's output
    source: str | None        # graph node name of its first input
    in_shape: tuple | None
    out_shape: tuple | None
    params: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)   # role ("weight", "bias", "running_mean", ...) -> FQN

    @property
    def structural(self):
        if self.kind not in STRUCTURAL:
            return False
        # AdaptiveAvgPool2d((7, 7)) on a 7x7 map changes nothing, so it is not a layer of its own here.
        return not (self.kind in POOLS and self.in_shape == self.out_shape)


def _shape(value):
    """Return the shape of a tensor, or of the value that a graph node stands for."""
    if isinstance(value, torch.fx.Node):
        value = value.meta.get("val")
    if isinstance(value, (tuple, list)) and value:  # max_pool2d_with_indices, native_dropout return tuples
        value = value[0]
    shape = getattr(value, "shape", None)
    return tuple(int(d) for d in shape) if shape is not None else None


@dataclass
class Call:
    """One operator call: from a graph node (arguments are nodes) or recorded eagerly (arguments are tensors)."""

    packet: str
    args: tuple
    kwargs: dict
    name: str
    output: object
    parameter_name: object = None   # argument -> parameter or buffer FQN, or None


def _pair(value, default=None):
    if value is None or value == []:
        value = default
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value) * (2 if len(value) == 1 else 1)
    return value


def _arg(call, index, name, default=None):
    if len(call.args) > index:
        return call.args[index]
    return call.kwargs.get(name, default)


def _conv_params(call, weight_shape):
    kernel = tuple(weight_shape[2:])
    padding = _arg(call, 4, "padding", 0)
    dilation = _pair(_arg(call, 5, "dilation", 1))
    if padding == "same":
        padding = tuple(d * (k - 1) // 2 for d, k in zip(dilation, kernel))
    elif padding == "valid":
        padding = (0, 0)
    # conv2d(input, weight, bias, stride, padding, dilation, groups) and
    # convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
    groups = _arg(call, 6, "groups", 1) if call.packet == "conv2d" else _arg(call, 8, "groups", 1)
    return {
        "in_channels": int(weight_shape[1]) * int(groups),
        "out_channels": int(weight_shape[0]),
        "kernel_size": kernel,
        "stride": _pair(_arg(call, 3, "stride", 1)),
        "padding": _pair(padding),
        "dilation": dilation,
        "groups": int(groups),
        "bias": _arg(call, 2, "bias") is not None,
    }


def _pool_params(call):
    kernel = _pair(_arg(call, 1, "kernel_size"))
    return {
        "kernel_size": kernel,
        "stride": _pair(_arg(call, 2, "stride", None), kernel),
        "padding": _pair(_arg(call, 3, "padding", 0)),
    }


def _linear_params(call):
    """Return (input, in_features, out_features) of linear(x, W, b), addmm(b, x, W.t()) or mm(x, W.t())."""
    if call.packet == "linear":
        fan_out, fan_in = _shape(call.args[1])
        return call.args[0], fan_in, fan_out
    source, weight_t = (call.args[1], call.args[2]) if call.packet == "addmm" else (call.args[0], call.args[1])
    fan_in, fan_out = _shape(weight_t)
    return source, fan_in, fan_out


def _describe(call):
    kind = _KINDS.get(call.packet, "other")
    source = call.args[0] if call.args else None
    name_of = call.parameter_name or (lambda _value: None)
    op = Op(kind=kind, target=call.packet, node=call.name, source=_node_name(source),
            in_shape=_shape(source), out_shape=_shape(call.output))

    if kind == "conv":
        op.weights = {"weight": name_of(call.args[1]), "bias": name_of(_arg(call, 2, "bias"))}
        op.params = _conv_params(call, _shape(call.args[1]))
    elif kind == "batchnorm":
        roles = ("weight", "bias", "running_mean", "running_var")
        op.weights = {role: name_of(call.args[i + 1]) for i, role in enumerate(roles)}
        op.params = {"num_features": op.in_shape[1] if op.in_shape else None,
                     "dim": len(op.in_shape) - 2 if op.in_shape else None}
    elif kind in ("maxpool", "avgpool"):
        op.params = _pool_params(call)
    elif kind in ("adaptive_avgpool", "adaptive_maxpool"):
        op.params = {"output_size": _pair(_arg(call, 1, "output_size"))}
    elif kind == "linear":
        source, fan_in, fan_out = _linear_params(call)
        op.in_shape, op.source = _shape(source), _node_name(source)
        op.params = {"in_features": fan_in, "out_features": fan_out}
        if call.packet == "linear":
            op.weights = {"weight": name_of(call.args[1]), "bias": name_of(_arg(call, 2, "bias"))}
    elif kind == "dropout" and call.packet in ("dropout", "native_dropout", "feature_dropout", "alpha_dropout"):
        op.params = {"p": float(_arg(call, 1, "p", 0.5))}
    return op


def _node_name(value):
    return value.name if isinstance(value, torch.fx.Node) else None


def _packet(target):
    return target.__name__.split(".")[0] if hasattr(target, "__name__") else str(target)


def program_outputs(program):
    """Return the graph nodes that an ``ExportedProgram`` returns, in order."""
    return next(node for node in program.graph.nodes if node.op == "output").args[0]


def trace_program(program):
    """Return the list of ``Op`` executed by an ``ExportedProgram``, in execution order."""
    signature = program.graph_signature

    def parameter_name(value):
        if not isinstance(value, torch.fx.Node):
            return None
        return signature.inputs_to_parameters.get(value.name) or signature.inputs_to_buffers.get(value.name)

    return [_describe(Call(_packet(node.target), node.args, node.kwargs, node.name, node, parameter_name))
            for node in program.graph.nodes if node.op == "call_function"]


class _Recorder(TorchDispatchMode):
    """Record every aten call, including the one that raises."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = f"call{len(self.calls)}"
        try:
            output = func(*args, **kwargs)
        except Exception:
            self.calls.append(Call(_packet(func), args, kwargs, name, None))
            raise
        self.calls.append(Call(_packet(func), args, kwargs, name, output))
        return output


def trace_until_error(model, example_input):
    """Run ``model`` eagerly and return the ``Op`` list up to and including the op that raised, if any.

    A model that ``torch.export`` cannot trace, because its forward raises, still shows every layer
    that ran before the error. The ops come from the aten dispatcher, so a Linear layer appears as
    ``addmm`` and BatchNorm as ``_native_batch_norm_legit``, with the same kinds as in an export.
    """
    recorder = _Recorder()
    try:
        with torch.no_grad(), recorder:
            model(example_input)
    except Exception:  # noqa: BLE001 - the caller reports the error itself
        pass
    return [_describe(call) for call in recorder.calls]


def export_model(model, example_input):
    """Export ``model`` with ``torch.export`` in its current train/eval mode."""
    with _quiet_fake_tensor_log():
        return torch.export.export(model, (example_input,), strict=False)


@contextlib.contextmanager
def _quiet_fake_tensor_log():
    """Silence torch's ERROR log of an operator that fails during export: callers report the error themselves."""
    fake_tensor_log = logging.getLogger("torch._subclasses.fake_tensor")
    level = fake_tensor_log.level
    fake_tensor_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        fake_tensor_log.setLevel(level)


class _PassThroughAfterError(TorchFunctionMode):
    """Turn the first torch call that raises into a pass-through, and every later call too.

    A pass-through returns the call's first tensor argument unchanged, so forward returns the last
    tensor computed before the error, and nothing after the error reaches the traced graph.
    """

    def __init__(self):
        super().__init__()
        self.failed = False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.failed:
            try:
                return func(*args, **kwargs)
            except Exception:  # noqa: BLE001 - the caller describes the failed call from the graph
                self.failed = True
        return next((leaf for leaf in tree_leaves((args, kwargs)) if isinstance(leaf, torch.Tensor)), None)


def export_until_error(model, example_input):
    """Export the forward pass of ``model`` up to the first torch call that raises.

    Returns ``(program, failed_op)``. The program computes every op before the error and returns the
    last tensor computed. ``failed_op`` describes the call that raised, read from the node that the
    tracer created for it, and is None when nothing raised. Exporting a forward pass that raises
    fails otherwise, because the exception leaves the tracer's module stack unbalanced.
    Returns ``(None, None)`` when export fails anyway, for example when the student's own Python
    code raises after the error.
    """
    mode = _PassThroughAfterError()
    forward = model.forward

    @functools.wraps(forward)
    def forward_until_error(*args, **kwargs):
        with mode:
            return forward(*args, **kwargs)

    model.forward = forward_until_error
    try:
        program = export_model(model, example_input)
    except Exception:  # noqa: BLE001 - student code; the caller keeps the eager trace
        return None, None
    finally:
        del model.forward
    return _remove_failed_nodes(program)


def _remove_failed_nodes(program):
    """Remove the nodes without a traced value (the call that raised) and return ``(program, failed_op)``."""
    failed = [node for node in program.graph.nodes if node.op == "call_function" and node.meta.get("val") is None]
    if not failed:
        return program, None
    ops = trace_program(program)
    failed_op = next(op for op in ops if op.node == failed[0].name)
    for node in reversed(failed):
        if node.users:
            return None, None
        program.graph.erase_node(node)
    program.graph_module.recompile()
    return program, failed_op
