"""Five nn.Sequential blocks without inplace ReLU; x.view(x.size(0), -1) flattens.

A correct VGG11-BN: every check passes.
"""
import torch.nn as nn

EXPECTED = {
    "test_vgg11_layers": "pass",
    "test_vgg11_pool_shapes": "pass",
    "test_vgg11_classifier": "pass",
}


def conv_bn_relu(cin, cout):
    return [nn.Conv2d(cin, cout, kernel_size=3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]


class VGG11(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.block1 = nn.Sequential(*conv_bn_relu(3, 64), nn.MaxPool2d(2, 2))
        self.block2 = nn.Sequential(*conv_bn_relu(64, 128), nn.MaxPool2d(2, 2))
        self.block3 = nn.Sequential(*conv_bn_relu(128, 256), *conv_bn_relu(256, 256), nn.MaxPool2d(2, 2))
        self.block4 = nn.Sequential(*conv_bn_relu(256, 512), *conv_bn_relu(512, 512), nn.MaxPool2d(2, 2))
        self.block5 = nn.Sequential(*conv_bn_relu(512, 512), *conv_bn_relu(512, 512), nn.MaxPool2d(2, 2))
        self.fc = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        x = self.block5(self.block4(self.block3(self.block2(self.block1(x)))))
        return self.fc(x.view(x.size(0), -1))
