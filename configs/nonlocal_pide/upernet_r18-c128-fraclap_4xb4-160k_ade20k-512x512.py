# Fractional-Laplacian nonlocal operator on ResNet-18 (v1c) through the mmext host:
# Y + tanh(alpha (-Lap)^s Y + b) per channel after norm2 of every BasicBlock, before the
# residual add. The embedded-data comparison model (docs); R-18 with the 128-channel decoder.
_base_ = '../resnet/upernet_r18-c128_4xb4-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        type='mmext.ResNetV1c',
        plugins=[dict(cfg=dict(type='mmext.NonlocalOperator'), position='after_conv2')]))
