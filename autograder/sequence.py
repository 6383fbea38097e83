"""Compare a traced layer sequence with the reference and describe the first difference.

A layer is a ``Layer``: a kind, the hyper-parameters that must match, a printable form, and a label
in the student's terms (``conv3_2``, ``pool3``, ``fc1``). The comparison reports only the first
difference, because every later layer is shifted by it.
"""

from dataclasses import dataclass

from . import messages, reference
from .verdict import Finding


@dataclass
class Layer:
    kind: str
    match: tuple
    text: str
    label: str = ""
    block: int | None = None


def _conv_text(params):
    return (f"Conv2d({params['in_channels']}, {params['out_channels']}, "
            f"kernel_size={params['kernel_size'][0]}, stride={params['stride'][0]}, padding={params['padding'][0]})")


def layer_from_op(op):
    """Return the ``Layer`` a traced op stands for, with the parameters that the comparison uses."""
    params = op.params
    if op.kind == "conv":
        match = tuple(params[key] for key in ("in_channels", "out_channels", "kernel_size", "stride",
                                              "padding", "dilation", "groups"))
        return Layer("conv", match, _conv_text(params))
    if op.kind == "batchnorm":
        dim = params.get("dim")
        return Layer("batchnorm", (params["num_features"], dim), f"BatchNorm{max(dim or 1, 1)}d({params['num_features']})")
    if op.kind == "relu":
        return Layer("relu", (), "ReLU")
    if op.kind in ("maxpool", "avgpool"):
        name = "MaxPool2d" if op.kind == "maxpool" else "AvgPool2d"
        match = (params["kernel_size"], params["stride"], params["padding"])
        return Layer(op.kind, match, f"{name}(kernel_size={params['kernel_size'][0]}, stride={params['stride'][0]})")
    if op.kind == "linear":
        return Layer("linear", (params["in_features"], params["out_features"]),
                     f"Linear({params['in_features']}, {params['out_features']})")
    if op.kind == "dropout":
        p = params.get("p")  # None for a hand-written dropout built from rand_like or bernoulli
        return Layer("dropout", (p,), "Dropout" if p is None else f"Dropout(p={p:g})")
    if op.kind == "softmax":
        return Layer("softmax", (), op.target.lstrip("_").replace("log_softmax", "LogSoftmax").replace("softmax", "Softmax"))
    return Layer(op.kind, (), op.target)


def expected_features():
    """Return the reference layers of the convolutional part, labelled conv1_1 ... pool5."""
    layers, names, channels, block = [], iter(reference.conv_names()), 3, 1
    for item in reference.VGG11_CFG:
        if item == "M":
            layers.append(Layer("maxpool", ((2, 2), (2, 2), (0, 0)), "MaxPool2d(kernel_size=2, stride=2)",
                                messages.text("label.pool", block=block), block))
            block += 1
            continue
        name = next(names)
        conv = (channels, item, (3, 3), (1, 1), (1, 1), (1, 1), 1)
        layers += [
            Layer("conv", conv, f"Conv2d({channels}, {item}, kernel_size=3, stride=1, padding=1)", name, block),
            Layer("batchnorm", (item, 2), f"BatchNorm2d({item})",
                  messages.text("label.after", layer=name, what="BatchNorm2d"), block),
            Layer("relu", (), "ReLU", messages.text("label.after", layer=name, what="ReLU"), block),
        ]
        channels = item
    return layers


def expected_classifier(num_classes=10):
    """Return the reference classifier layers, labelled fc1 (classifier[0]) ... fc3 (classifier[6])."""
    sizes = [(reference.FLATTENED_FEATURES, reference.HIDDEN_FEATURES),
             (reference.HIDDEN_FEATURES, reference.HIDDEN_FEATURES),
             (reference.HIDDEN_FEATURES, num_classes)]
    layers = []
    for index, (fan_in, fan_out) in enumerate(sizes, start=1):
        name = f"fc{index} (classifier[{3 * (index - 1)}])"
        layers.append(Layer("linear", (fan_in, fan_out), f"Linear({fan_in}, {fan_out})", name))
        if index < len(sizes):
            layers.append(Layer("relu", (), "ReLU", messages.text("label.after", layer=f"fc{index}", what="ReLU")))
            layers.append(Layer("dropout", (0.5,), "Dropout(p=0.5)",
                                messages.text("label.after", layer=f"fc{index}", what="Dropout")))
    return layers


def _same(expected, actual):
    if expected.kind == "dropout" and actual.kind == "dropout":
        return actual.match == (None,) or actual.match == expected.match
    return expected.kind == actual.kind and expected.match == actual.match


# ReLU commutes with max-pooling and with dropout (both only select or scale by non-negative
# factors), so "pool then ReLU" and "dropout then ReLU" compute the same function as the reference.
_COMMUTES_WITH_RELU = {"maxpool", "dropout"}


def canonical(layers):
    """Return ``layers`` with each ReLU moved in front of a max-pool or dropout that directly precedes it."""
    layers = list(layers)
    for index in range(len(layers) - 1):
        if layers[index].kind in _COMMUTES_WITH_RELU and layers[index + 1].kind == "relu":
            layers[index], layers[index + 1] = layers[index + 1], layers[index]
    return layers


def _hint(expected):
    if expected.kind == "batchnorm":
        return "hint.batchnorm", {}
    if expected.kind == "relu":
        return "hint.relu", {}
    if expected.kind == "maxpool":
        return "hint.pool", {"block": expected.block}
    if expected.kind == "conv":
        return "hint.conv", {}
    if expected.kind == "dropout":
        return "hint.dropout", {}
    return "hint.linear", {}


def first_difference(check, expected, actual):
    """Return a ``Finding`` for the first place where ``actual`` departs from ``expected``, or None."""
    actual = canonical(actual)
    for index, want in enumerate(expected):
        if index >= len(actual):
            hint, fields = _hint(want)
            return Finding(check, "layers.truncated", {"where": want.label, "expected": want.text}, hint, fields)
        got = actual[index]
        if _same(want, got):
            continue
        # A run of up to three layers (a whole conv-BN-ReLU unit) may be missing or extra.
        if any(_same(later, got) for later in expected[index + 1:index + 4]):
            hint, fields = _hint(want)
            return Finding(check, "layers.missing", {"where": want.label, "expected": want.text, "actual": got.text},
                           hint, fields)
        if any(_same(want, later) for later in actual[index + 1:index + 4]):
            return Finding(check, "layers.extra", {"where": want.label, "actual": got.text}, "hint.extra")
        hint, fields = _hint(want)
        return Finding(check, "layers.changed", {"where": want.label, "expected": want.text, "actual": got.text},
                       hint, fields)
    if len(actual) > len(expected):
        return Finding(check, "layers.extra", {"where": messages.text("label.end"), "actual": actual[len(expected)].text},
                       "hint.extra")
    return None
