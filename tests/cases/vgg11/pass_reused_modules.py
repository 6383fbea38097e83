"""One MaxPool2d and one ReLU module are reused for every block; convolutions in a ModuleList.

A correct VGG11-BN: every check passes.
"""
import torch
import torch.nn as nn

EXPECTED = {
    "test_vgg11_layers": "pass",
    "test_vgg11_pool_shapes": "pass",
    "test_vgg11_classifier": "pass",
}

BLOCKS = [[64], [128], [256, 256], [512, 512], [512, 512]]


class VGG11(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.relu = nn.ReLU()
        self.blocks = nn.ModuleList()
        channels = 3
        for widths in BLOCKS:
            layers = nn.ModuleList()
            for width in widths:
                layers.append(nn.ModuleList([nn.Conv2d(channels, width, 3, 1, 1), nn.BatchNorm2d(width)]))
                channels = width
            self.blocks.append(layers)
        self.fc1 = nn.Linear(512 * 7 * 7, 4096)
        self.fc2 = nn.Linear(4096, 4096)
        self.out = nn.Linear(4096, num_classes)
        self.drop = nn.Dropout(p=0.5)

    def forward(self, x):
        for block in self.blocks:
            for conv, norm in block:
                x = self.relu(norm(conv(x)))
            x = self.pool(x)
        x = torch.flatten(x, start_dim=1)
        x = self.drop(self.relu(self.fc1(x)))
        x = self.drop(self.relu(self.fc2(x)))
        return self.out(x)
