"""Backbones: the ResNet host and whole-network designs."""
from .resnet import BasicBlock, Bottleneck, ResNet, ResNetV1c, ResNetV1d, ResNeXt, XBottleneck
from .sda_resnet import SDAResNet

__all__ = [
    'BasicBlock', 'Bottleneck', 'ResNet', 'ResNetV1c', 'ResNetV1d', 'ResNeXt', 'XBottleneck',
    'SDAResNet'
]
