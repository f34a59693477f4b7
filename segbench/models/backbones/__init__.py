"""Backbones shared by several architecture families (VGG16, ResNet)."""
