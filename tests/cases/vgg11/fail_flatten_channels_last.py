"""The feature map is flattened in channels-last order (permute before flatten).

Every layer and shape is right and fc1 gets 25088 values, but in another order than VGG11's
flatten, so with the same weights the classifier computes something else.
"""
import torch.nn as nn

EXPECTED = {
    "test_vgg11_layers": "pass",
    "test_vgg11_pool_shapes": "pass",
    "test_vgg11_classifier": "fail",
}


class VGG11(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        layers, channels = [], 3
        for width in [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]:
            if width == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
                channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(7 * 7 * 512, 4096), nn.ReLU(), nn.Dropout(),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        x = self.features(x).permute(0, 2, 3, 1)
        return self.classifier(x.flatten(1))
