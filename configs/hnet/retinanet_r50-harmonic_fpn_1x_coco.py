# HarmonicConv-ResNet-50: the 3x3 conv of every bottleneck is a harmonic convolution (orders
# 0 and 1, stacked magnitudes as its output channels) through the dcn slot, which swaps only
# the 3x3 convs (a 1x1 kernel has no angular extent); stem, 1x1 convs and shortcuts stay plain.
_base_ = '../resnet/retinanet_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        type='mmext.ResNet',
        dcn=dict(type='mmext.HarmonicConv', max_order=1),
        stage_with_dcn=(True, True, True, True)))
