# Example answer: the intended fine-tuning set-up. The convolutional features are frozen,
# the classifier stays trainable, and the last layer is a new Linear(4096, 10).
import torch.nn as nn

from autograder.weights import load_vgg11_imagenet

model_finetune = load_vgg11_imagenet()
for param in model_finetune.features.parameters():
    param.requires_grad = False
model_finetune.classifier[6] = nn.Linear(4096, 10)
