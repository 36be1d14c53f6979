# HarmonicConv for both 3x3 convs of every BasicBlock (dcn slot); stem and downsample plain.
# The embedded-data comparison model (docs); R-18 with the 128-channel decoder.
_base_ = '../resnet/upernet_r18-c128_4xb4-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        type='mmext.ResNetV1c',
        dcn=dict(type='mmext.HarmonicConv', max_order=1),
        stage_with_dcn=(True, True, True, True)))
