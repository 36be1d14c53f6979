"""Backbones: the ResNet host and whole-network designs."""
from .resnet import BasicBlock, Bottleneck, ResNet, ResNetV1c, ResNetV1d, ResNeXt, XBottleneck  # noqa: F401
from .sda_resnet import SDAResNet  # noqa: F401
