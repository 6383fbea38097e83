"""A hand-written dropout module with the behaviour of nn.Dropout(0.5); pooling before ReLU.

Max-pooling and ReLU commute, so pooling first computes the same function. A correct
VGG11-BN: every check passes.
"""
import torch
import torch.nn as nn

EXPECTED = {
    "test_vgg11_layers": "pass",
    "test_vgg11_pool_shapes": "pass",
    "test_vgg11_classifier": "pass",
}


class MyDropout(nn.Module):
    def __init__(self, p=0.5):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training:
            return x
        keep = (torch.rand_like(x) > self.p).float()
        return x * keep / (1 - self.p)


class VGG11(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        layers, channels = [], 3
        for width in [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]:
            if width == "M":
                # pool first, then the block's last ReLU
                layers.insert(len(layers) - 1, nn.MaxPool2d(2, 2))
                continue
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(25088, 4096), nn.ReLU(), MyDropout(),
            nn.Linear(4096, 4096), nn.ReLU(), MyDropout(),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))
