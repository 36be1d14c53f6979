"""Backbones: the ResNet host and whole-network designs."""
from . import mobilenet_v2, pvt  # noqa: F401  (upstream designs: mmext.models.upstream)
from .base_backbone import DenseBackbone
from .densenet import DenseNet
from .fcvit import FCViT
from .g_ghost_regnet import GGhostRegNet
from .ghostnet import GhostModule, GhostNet
from .hatnet import HATNet
from .hnet import HNet
from .hornet import GnConv, HorNet
from .moganet import MogaNet, MultiOrderGatedAggregation
from .mpvit import MPViT
from .mvitv2 import MViTv2
from .resnet import BasicBlock, Bottleneck, ResNet, ResNetV1c, ResNetV1d, ResNeXt, XBottleneck
from .rmnet import RMResNet
from .sda_resnet import SDAResNet
from .threshnet import ThreshNet
from .van import LKA, VAN

__all__ = [
    'BasicBlock', 'Bottleneck', 'DenseBackbone', 'ResNet', 'ResNetV1c', 'ResNetV1d', 'ResNeXt',
    'XBottleneck', 'SDAResNet', 'VAN', 'LKA', 'MogaNet', 'MultiOrderGatedAggregation', 'HorNet',
    'GnConv', 'MPViT', 'HATNet', 'FCViT', 'MViTv2', 'DenseNet', 'GhostNet', 'GhostModule',
    'GGhostRegNet', 'ThreshNet', 'RMResNet', 'HNet'
]
