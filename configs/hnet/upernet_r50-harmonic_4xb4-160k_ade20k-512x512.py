# HarmonicConv-ResNet-50 (V1c, mmseg's) in UperNet: every bottleneck 3x3 a harmonic
# convolution of orders 0 and 1 through the dcn slot; stem, 1x1 convs and shortcuts plain.
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        type='mmext.ResNetV1c',
        dcn=dict(type='mmext.HarmonicConv', max_order=1),
        stage_with_dcn=(True, True, True, True)))
