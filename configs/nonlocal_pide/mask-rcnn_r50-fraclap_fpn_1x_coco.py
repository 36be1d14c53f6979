# Fractional-Laplacian nonlocal operator (Bohn, Griebel, Kannan, arXiv 2108.02430;
# no public code, see docs/designs/nonlocal_pide.md): Y + tanh(alpha (-Lap)^s Y + b)
# per channel after conv2 (the 3x3 conv + BN + ReLU) of every bottleneck; alpha = b = 0
# at init, so the ImageNet R-50 starts unchanged.
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        type='mmext.ResNet',
        plugins=[dict(cfg=dict(type='mmext.NonlocalOperator'), position='after_conv2')]))
