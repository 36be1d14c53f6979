# Fractional-Laplacian nonlocal operator (Bohn, Griebel, Kannan, arXiv 2108.02430;
# no public code, see docs/designs/nonlocal_pide.md): Y + tanh(alpha (-Lap)^s Y + b)
# per channel after conv2 (the 3x3 conv + BN + ReLU) of every bottleneck; alpha = b = 0
# at init, so the ImageNet R-50 starts unchanged.
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        type='mmext.ResNetV1c',
        plugins=[dict(cfg=dict(type='mmext.NonlocalOperator'), position='after_conv2')]))
