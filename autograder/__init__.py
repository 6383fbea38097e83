"""Grading and teaching tools for Assignment 1 (VGG11 from scratch, fine-tuning a torchvision VGG11)."""
