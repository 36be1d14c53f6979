# ODConv-ResNet-50 (4x): every conv inside the bottlenecks (1x1, 3x3, 1x1)
# is ODConv with reduction 0.0625; the stem and the downsample path stay
# static convs, as in the paper. 4x (kernel_num=4) is the paper's Mask R-CNN setting.
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        type='mmext.ResNetV1c',
        block_conv_cfg=dict(type='mmext.ODConv', kernel_num=4, reduction=0.0625)))
