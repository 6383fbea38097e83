"""pool5 is defined in __init__ but forward never applies it; adaptive pooling hides the shape.

The output is (N, 10), but the block-5 feature map stays 14x14 until the adaptive average pool.
"""
import torch
import torch.nn as nn

EXPECTED = {
    "test_vgg11_layers": "fail",
    "test_vgg11_pool_shapes": "fail",
    "test_vgg11_classifier": "pass",
}


def conv_bn_relu(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class VGG11(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.block1 = nn.Sequential(conv_bn_relu(3, 64), nn.MaxPool2d(2, 2))
        self.block2 = nn.Sequential(conv_bn_relu(64, 128), nn.MaxPool2d(2, 2))
        self.block3 = nn.Sequential(conv_bn_relu(128, 256), conv_bn_relu(256, 256), nn.MaxPool2d(2, 2))
        self.block4 = nn.Sequential(conv_bn_relu(256, 512), conv_bn_relu(512, 512), nn.MaxPool2d(2, 2))
        self.block5 = nn.Sequential(conv_bn_relu(512, 512), conv_bn_relu(512, 512))
        self.pool5 = nn.MaxPool2d(2, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        x = self.block5(self.block4(self.block3(self.block2(self.block1(x)))))
        x = self.avgpool(x)
        return self.classifier(torch.flatten(x, 1))
