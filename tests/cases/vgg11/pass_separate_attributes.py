"""Every layer a separate attribute, as in a hand-written class, with inplace ReLU modules.

A correct VGG11-BN: every check passes.
"""
import torch
import torch.nn as nn

EXPECTED = {
    "test_vgg11_layers": "pass",
    "test_vgg11_pool_shapes": "pass",
    "test_vgg11_classifier": "pass",
}


class VGG11(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1_1, self.bn1_1, self.relu1_1 = nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(True)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2_1, self.bn2_1, self.relu2_1 = nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(True)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.conv3_1, self.bn3_1, self.relu3_1 = nn.Conv2d(128, 256, 3, padding=1), nn.BatchNorm2d(256), nn.ReLU(True)
        self.conv3_2, self.bn3_2, self.relu3_2 = nn.Conv2d(256, 256, 3, padding=1), nn.BatchNorm2d(256), nn.ReLU(True)
        self.pool3 = nn.MaxPool2d(2, 2)
        self.conv4_1, self.bn4_1, self.relu4_1 = nn.Conv2d(256, 512, 3, padding=1), nn.BatchNorm2d(512), nn.ReLU(True)
        self.conv4_2, self.bn4_2, self.relu4_2 = nn.Conv2d(512, 512, 3, padding=1), nn.BatchNorm2d(512), nn.ReLU(True)
        self.pool4 = nn.MaxPool2d(2, 2)
        self.conv5_1, self.bn5_1, self.relu5_1 = nn.Conv2d(512, 512, 3, padding=1), nn.BatchNorm2d(512), nn.ReLU(True)
        self.conv5_2, self.bn5_2, self.relu5_2 = nn.Conv2d(512, 512, 3, padding=1), nn.BatchNorm2d(512), nn.ReLU(True)
        self.pool5 = nn.MaxPool2d(2, 2)
        self.fc1, self.relu_fc1, self.drop1 = nn.Linear(25088, 4096), nn.ReLU(True), nn.Dropout()
        self.fc2, self.relu_fc2, self.drop2 = nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout()
        self.fc3 = nn.Linear(4096, num_classes)

    def forward(self, x):
        x = self.pool1(self.relu1_1(self.bn1_1(self.conv1_1(x))))
        x = self.pool2(self.relu2_1(self.bn2_1(self.conv2_1(x))))
        x = self.relu3_1(self.bn3_1(self.conv3_1(x)))
        x = self.pool3(self.relu3_2(self.bn3_2(self.conv3_2(x))))
        x = self.relu4_1(self.bn4_1(self.conv4_1(x)))
        x = self.pool4(self.relu4_2(self.bn4_2(self.conv4_2(x))))
        x = self.relu5_1(self.bn5_1(self.conv5_1(x)))
        x = self.pool5(self.relu5_2(self.bn5_2(self.conv5_2(x))))
        x = torch.flatten(x, 1)
        x = self.drop1(self.relu_fc1(self.fc1(x)))
        x = self.drop2(self.relu_fc2(self.fc2(x)))
        return self.fc3(x)
