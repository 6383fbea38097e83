"""The reference VGG11 with BatchNorm (VGG11-BN) that the checks compare a student's model with.

One configuration list drives the whole network, as in torchvision's ``models/vgg.py``:
a number is a 3x3 convolution with that many output channels, followed by BatchNorm2d and
ReLU, and ``"M"`` is a 2x2 max-pool with stride 2.
"""

import torch.nn as nn

VGG11_CFG = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]

INPUT_SIZE = 224

# Per-sample shape after each of the five max-pools for a 3x224x224 input: 224 halves five times to 7.
POOL_SHAPES = [(64, 112, 112), (128, 56, 56), (256, 28, 28), (512, 14, 14), (512, 7, 7)]

FLATTENED_FEATURES = 512 * 7 * 7
HIDDEN_FEATURES = 4096


def conv_names(cfg=VGG11_CFG):
    """Return the conventional name of each convolution in order: conv1_1, conv2_1, conv3_1, conv3_2, ..."""
    names, block, index = [], 1, 1
    for item in cfg:
        if item == "M":
            block, index = block + 1, 1
        else:
            names.append(f"conv{block}_{index}")
            index += 1
    return names


def block_ends(cfg=VGG11_CFG):
    """Return, for each pool k (1-based position in the list), the index of the last convolution before it."""
    ends, convs = [], 0
    for item in cfg:
        if item == "M":
            ends.append(convs - 1)
        else:
            convs += 1
    return ends


def make_features(cfg=VGG11_CFG, in_channels=3):
    layers = []
    for item in cfg:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers += [nn.Conv2d(in_channels, item, kernel_size=3, padding=1),
                   nn.BatchNorm2d(item),
                   nn.ReLU(inplace=True)]
        in_channels = item
    return nn.Sequential(*layers)


def make_classifier(num_classes=10, dropout=0.5):
    return nn.Sequential(
        nn.Linear(FLATTENED_FEATURES, HIDDEN_FEATURES), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(HIDDEN_FEATURES, HIDDEN_FEATURES), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(HIDDEN_FEATURES, num_classes),
    )


class ReferenceVGG11(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.features = make_features()
        self.classifier = make_classifier(num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def build_reference_vgg11(num_classes=10):
    return ReferenceVGG11(num_classes)
