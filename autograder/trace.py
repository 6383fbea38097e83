"""Operation-level trace of a model's forward pass, read from a ``torch.export`` graph.

``torch.export.export(model, (x,), strict=False)`` records every aten operation that the forward
pass executes, whether it came from an ``nn.ReLU`` module or an ``F.relu`` call, so module and
functional styles give the same trace. The trace is read from the ``ExportedProgram`` alone (graph
nodes, their shape metadata and the graph signature), so it can be taken from a program that was
saved with ``torch.export.save`` in another process without running the student's Python code.
"""

from dataclasses import dataclass, field

import torch

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
    "linear": "linear", "addmm": "linear",
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
POOLS = {"maxpool", "avgpool", "adaptive_avgpool", "adaptive_maxpool"}


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
    shape = getattr(value, "shape", None)
    return tuple(int(d) for d in shape) if shape is not None else None


def _node_shape(node):
    if not isinstance(node, torch.fx.Node):
        return None
    value = node.meta.get("val")
    if isinstance(value, (tuple, list)):  # max_pool2d_with_indices, native_dropout return tuples
        value = value[0]
    return _shape(value)


def _pair(value, default=None):
    if value is None or value == []:
        value = default
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value) * (2 if len(value) == 1 else 1)
    return value


def _arg(node, index, name, default=None):
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _conv_params(node, packet, weight_shape):
    kernel = tuple(weight_shape[2:])
    padding = _arg(node, 4, "padding", 0)
    dilation = _pair(_arg(node, 5, "dilation", 1))
    if padding == "same":
        padding = tuple(d * (k - 1) // 2 for d, k in zip(dilation, kernel))
    elif padding == "valid":
        padding = (0, 0)
    # conv2d(input, weight, bias, stride, padding, dilation, groups) and
    # convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
    groups = _arg(node, 6, "groups", 1) if packet == "conv2d" else _arg(node, 8, "groups", 1)
    return {
        "in_channels": int(weight_shape[1]) * int(groups),
        "out_channels": int(weight_shape[0]),
        "kernel_size": kernel,
        "stride": _pair(_arg(node, 3, "stride", 1)),
        "padding": _pair(padding),
        "dilation": dilation,
        "groups": int(groups),
        "bias": _arg(node, 2, "bias") is not None,
    }


def _pool_params(node):
    kernel = _pair(_arg(node, 1, "kernel_size"))
    return {
        "kernel_size": kernel,
        "stride": _pair(_arg(node, 2, "stride", None), kernel),
        "padding": _pair(_arg(node, 3, "padding", 0)),
    }


def _param_name(signature, node):
    if not isinstance(node, torch.fx.Node):
        return None
    return signature.inputs_to_parameters.get(node.name) or signature.inputs_to_buffers.get(node.name)


def _describe(node, signature):
    packet = node.target.__name__.split(".")[0] if hasattr(node.target, "__name__") else str(node.target)
    kind = _KINDS.get(packet, "other")
    source = node.args[0] if node.args else None
    op = Op(kind=kind, target=packet, node=node.name, source=getattr(source, "name", None),
            in_shape=_node_shape(source), out_shape=_node_shape(node))

    if kind == "conv":
        weight = node.args[1]
        op.weights = {"weight": _param_name(signature, weight), "bias": _param_name(signature, _arg(node, 2, "bias"))}
        op.params = _conv_params(node, packet, _node_shape(weight))
    elif kind == "batchnorm":
        roles = ("weight", "bias", "running_mean", "running_var")
        op.weights = {role: _param_name(signature, node.args[i + 1]) for i, role in enumerate(roles)}
        op.params = {"num_features": op.in_shape[1] if op.in_shape else None,
                     "dim": len(op.in_shape) - 2 if op.in_shape else None}
    elif kind in ("maxpool", "avgpool"):
        op.params = _pool_params(node)
    elif kind in ("adaptive_avgpool", "adaptive_maxpool"):
        op.params = {"output_size": _pair(_arg(node, 1, "output_size"))}
    elif kind == "linear" and packet == "linear":
        weight_shape = _node_shape(node.args[1])
        op.weights = {"weight": _param_name(signature, node.args[1]),
                      "bias": _param_name(signature, _arg(node, 2, "bias"))}
        op.params = {"in_features": weight_shape[1], "out_features": weight_shape[0]}
    elif kind == "linear":  # addmm(bias, input, weight.t()): the sizes come from the input and output shapes
        op.in_shape = _node_shape(node.args[1])
        op.params = {"in_features": op.in_shape[-1] if op.in_shape else None,
                     "out_features": op.out_shape[-1] if op.out_shape else None}
    elif kind == "dropout" and packet in ("dropout", "native_dropout", "feature_dropout", "alpha_dropout"):
        op.params = {"p": float(_arg(node, 1, "p", 0.5))}
    return op


def trace_program(program):
    """Return the list of ``Op`` executed by an ``ExportedProgram``, in execution order."""
    signature = program.graph_signature
    return [_describe(node, signature) for node in program.graph.nodes if node.op == "call_function"]


def export_model(model, example_input):
    """Export ``model`` with ``torch.export`` in its current train/eval mode."""
    return torch.export.export(model, (example_input,), strict=False)
