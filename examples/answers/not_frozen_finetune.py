# Example answer with one mistake: the new 10-class head is right, but the features are not frozen.
import torch.nn as nn

from autograder.weights import load_vgg11_imagenet

model_finetune = load_vgg11_imagenet()
model_finetune.classifier[6] = nn.Linear(4096, 10)
