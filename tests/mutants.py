"""VGG11 variants that must pass and mutants that must fail, generated from the reference layer lists.

A model here is ``features -> optional pre-flatten module -> flatten -> classifier``, each part an
``nn.Sequential`` built from the reference and then changed by one mutation. The systematic mutants
drop, replace, duplicate and swap each layer, and change each hyper-parameter, so every layer of
VGG11 is disturbed at least once. The named mutants are the mistakes students make.
"""

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from autograder.reference import VGG11_CFG, make_classifier, make_features

LAYERS, POOLS, CLASSIFIER = "test_vgg11_layers", "test_vgg11_pool_shapes", "test_vgg11_classifier"
ALL_CHECKS = (LAYERS, POOLS, CLASSIFIER)


@dataclass
class Model:
    """How to build one test model: a name, changes to the reference parts, the cells that must fail."""

    name: str
    features: object = None          # list[nn.Module] -> list[nn.Module]
    classifier: object = None        # (list[nn.Module], num_classes) -> list[nn.Module]
    pre_flatten: object = None       # () -> nn.Module run between features and flatten
    cfg: list = field(default_factory=lambda: list(VGG11_CFG))
    failing: tuple = ()              # test cells that must fail; () for a variant
    key: str | None = None           # reason key of the first failing cell, where it matters

    def build_class(self):
        spec = self

        class VGG11(nn.Module):
            def __init__(self, num_classes=10):
                super().__init__()
                features = list(make_features(spec.cfg))
                classifier = list(make_classifier(num_classes))
                self.features = nn.Sequential(*(spec.features(features) if spec.features else features))
                self.pre = spec.pre_flatten() if spec.pre_flatten else nn.Identity()
                self.classifier = nn.Sequential(
                    *(spec.classifier(classifier, num_classes) if spec.classifier else classifier))

            def forward(self, x):
                return self.classifier(torch.flatten(self.pre(self.features(x)), 1))

        VGG11.__qualname__ = f"VGG11[{self.name}]"
        return VGG11


def _replace(index, make):
    return lambda layers: layers[:index] + [make(layers[index])] + layers[index + 1:]


def _drop(index):
    return lambda layers: layers[:index] + layers[index + 1:]


def _swap(index):
    return lambda layers: layers[:index] + [layers[index + 1], layers[index]] + layers[index + 2:]


def _duplicate(index):
    return lambda layers: layers[:index + 1] + [layers[index]] + layers[index + 1:]


def _on_classifier(change):
    return lambda layers, _num_classes: change(layers)


def _conv_like(conv, **changes):
    options = dict(in_channels=conv.in_channels, out_channels=conv.out_channels, kernel_size=conv.kernel_size,
                   stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups)
    options.update(changes)
    return nn.Conv2d(**options)


_FEATURE_REPLACEMENTS = {
    nn.Conv2d: {
        "kernel5": lambda c: _conv_like(c, kernel_size=5, padding=2),
        "kernel1": lambda c: _conv_like(c, kernel_size=1, padding=0),
        "dilation2": lambda c: _conv_like(c, dilation=2, padding=2),
        "groups2": lambda c: _conv_like(c, groups=2) if c.in_channels % 2 == 0 else _conv_like(c, stride=2),
    },
    nn.BatchNorm2d: {
        "identity": lambda b: nn.Identity(),
        "instancenorm": lambda b: nn.InstanceNorm2d(b.num_features, affine=True),
    },
    nn.ReLU: {
        "leakyrelu": lambda r: nn.LeakyReLU(0.1),
        "sigmoid": lambda r: nn.Sigmoid(),
    },
    nn.MaxPool2d: {
        "avgpool": lambda p: nn.AvgPool2d(2, 2),
        "maxpool3": lambda p: nn.MaxPool2d(3, 2, padding=1),
        "identity": lambda p: nn.Identity(),
    },
}

_CLASSIFIER_REPLACEMENTS = {
    nn.ReLU: {"leakyrelu": lambda r: nn.LeakyReLU(0.1), "tanh": lambda r: nn.Tanh()},
    nn.Dropout: {"identity": lambda d: nn.Identity(), "p0.2": lambda d: nn.Dropout(0.2)},
}


def _layer_names(layers):
    """Name each layer as the reference does (conv3_2, bn3_2, relu3_2, pool3; fc1, relu_fc1, drop_fc1)."""
    names, block, index = [], 1, 0
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            index += 1
            names.append(f"conv{block}_{index}")
        elif isinstance(layer, nn.MaxPool2d):
            names.append(f"pool{block}")
            block, index = block + 1, 0
        else:
            prefix = "bn" if isinstance(layer, nn.BatchNorm2d) else "relu"
            names.append(f"{prefix}{block}_{index}")
    return names


def systematic_mutants():
    """Return one ``Model`` per single-layer mutation of the reference."""
    mutants = []
    features = list(make_features())
    for index, name in enumerate(_layer_names(features)):
        layer = features[index]
        mutants.append(Model(f"drop-{name}", features=_drop(index), failing=(LAYERS,)))
        mutants.append(Model(f"duplicate-{name}", features=_duplicate(index), failing=(LAYERS,)))
        for label, make in _FEATURE_REPLACEMENTS.get(type(layer), {}).items():
            mutants.append(Model(f"{name}-{label}", features=_replace(index, make), failing=(LAYERS,)))
        if index + 1 < len(features):
            pair = {type(layer), type(features[index + 1])}
            if pair != {nn.ReLU, nn.MaxPool2d}:  # ReLU and max-pool commute: that swap is a variant
                mutants.append(Model(f"swap-{name}", features=_swap(index), failing=(LAYERS,)))

    classifier = list(make_classifier(10))
    names = ["fc1", "relu_fc1", "drop_fc1", "fc2", "relu_fc2", "drop_fc2", "fc3"]
    for index, name in enumerate(names):
        layer = classifier[index]
        mutants.append(Model(f"drop-{name}", classifier=_on_classifier(_drop(index)), failing=(CLASSIFIER,)))
        mutants.append(Model(f"duplicate-{name}", classifier=_on_classifier(_duplicate(index)),
                             failing=(CLASSIFIER,)))
        for label, make in _CLASSIFIER_REPLACEMENTS.get(type(layer), {}).items():
            mutants.append(Model(f"{name}-{label}", classifier=_on_classifier(_replace(index, make)),
                                 failing=(CLASSIFIER,)))
        if index + 1 < len(classifier):
            pair = {type(layer), type(classifier[index + 1])}
            if pair != {nn.ReLU, nn.Dropout}:  # ReLU and dropout commute: that swap is a variant
                mutants.append(Model(f"swap-{name}", classifier=_on_classifier(_swap(index)),
                                     failing=(CLASSIFIER,)))
    return mutants


def _without(kind):
    return lambda layers: [layer for layer in layers if not isinstance(layer, kind)]


def _widths(hidden):
    def change(layers, num_classes):
        return [nn.Linear(25088, hidden), nn.ReLU(), nn.Dropout(), nn.Linear(hidden, hidden), nn.ReLU(),
                nn.Dropout(), nn.Linear(hidden, num_classes)]
    return change


def _cfg(*items):
    return list(items)


NAMED_MUTANTS = [
    Model("no-batchnorm-at-all", features=_without(nn.BatchNorm2d), failing=(LAYERS,), key="layers.missing"),
    Model("relu-missing-in-block2", features=_drop(6), failing=(LAYERS,), key="layers.missing"),
    Model("conv3_1-wrong-channels", cfg=_cfg(64, "M", 128, "M", 320, 256, "M", 512, 512, "M", 512, 512, "M"),
          failing=(LAYERS,), key="layers.changed"),
    Model("kernel5-everywhere",
          features=lambda layers: [_conv_like(l, kernel_size=5, padding=2) if isinstance(l, nn.Conv2d) else l
                                   for l in layers], failing=(LAYERS,), key="layers.changed"),
    Model("padding0-with-adaptive-pool",
          features=lambda layers: [_conv_like(l, padding=0) if isinstance(l, nn.Conv2d) else l for l in layers],
          pre_flatten=lambda: nn.AdaptiveAvgPool2d((7, 7)), failing=(LAYERS, POOLS), key="layers.changed"),
    Model("padding0-without-adaptive-pool",
          features=lambda layers: [_conv_like(l, padding=0) if isinstance(l, nn.Conv2d) else l for l in layers],
          failing=ALL_CHECKS, key="layers.changed"),
    Model("avgpool-in-block3", features=_replace(14, lambda p: nn.AvgPool2d(2, 2)), failing=(LAYERS,),
          key="layers.changed"),
    Model("three-convs-in-block3", cfg=_cfg(64, "M", 128, "M", 256, 256, 256, "M", 512, 512, "M", 512, 512, "M"),
          failing=(LAYERS,), key="layers.extra"),
    Model("batchnorm1d-in-classifier",
          classifier=lambda layers, n: layers[:1] + [nn.BatchNorm1d(4096)] + layers[1:], failing=(CLASSIFIER,),
          key="layers.extra"),
    Model("softmax-output", classifier=lambda layers, n: layers + [nn.Softmax(dim=1)], failing=(CLASSIFIER,),
          key="layers.extra"),
    Model("log-softmax-output", classifier=lambda layers, n: layers + [nn.LogSoftmax(dim=1)],
          failing=(CLASSIFIER,), key="layers.extra"),
    Model("hidden-width-2048", classifier=_widths(2048), failing=(CLASSIFIER,), key="layers.changed"),
    Model("hidden-width-1024", classifier=_widths(1024), failing=(CLASSIFIER,), key="layers.changed"),
    Model("grayscale-first-conv", features=_replace(0, lambda c: _conv_like(c, in_channels=1)),
          failing=ALL_CHECKS, key="run.input_channels"),
    Model("num-classes-from-constant",
          classifier=lambda layers, n: layers[:-1] + [nn.Linear(4096, 10)], failing=(CLASSIFIER,),
          key="classifier.num_classes_ignored"),
]

VARIANTS = [
    Model("reference"),
    Model("pool-before-relu", features=lambda layers: _swap_all(layers, nn.ReLU, nn.MaxPool2d)),
    Model("dropout-before-relu", classifier=lambda layers, n: _swap_all(layers, nn.ReLU, nn.Dropout)),
    Model("conv-without-bias",
          features=lambda layers: [_conv_like(l, bias=False) if isinstance(l, nn.Conv2d) else l for l in layers]),
    Model("same-padding",
          features=lambda layers: [_conv_like(l, padding="same") if isinstance(l, nn.Conv2d) else l for l in layers]),
    Model("relu-not-inplace", features=lambda layers: [nn.ReLU() if isinstance(l, nn.ReLU) else l for l in layers]),
    Model("adaptive-avgpool-7", pre_flatten=lambda: nn.AdaptiveAvgPool2d((7, 7))),
    Model("adaptive-maxpool-7", pre_flatten=lambda: nn.AdaptiveMaxPool2d(7)),
]


def _swap_all(layers, first, second):
    """Swap every adjacent (first, second) pair, such as ReLU followed by MaxPool2d."""
    layers = list(layers)
    for index in range(len(layers) - 1):
        if isinstance(layers[index], first) and isinstance(layers[index + 1], second):
            layers[index], layers[index + 1] = layers[index + 1], layers[index]
    return layers
