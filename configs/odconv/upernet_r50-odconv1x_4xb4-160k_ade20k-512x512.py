# ODConv-ResNet-50 (1x): every conv inside the bottlenecks (1x1, 3x3, 1x1)
# is ODConv with reduction 0.0625; the stem and the downsample path stay
# static convs, as in the paper.
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        type='mmext.ResNetV1c',
        block_conv_cfg=dict(type='mmext.ODConv', kernel_num=1, reduction=0.0625)))
