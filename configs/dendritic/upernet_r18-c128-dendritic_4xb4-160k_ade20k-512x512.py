# DendriticConv as both 3x3 convs of every BasicBlock; stem and downsample plain.
# The embedded-data comparison model (docs); R-18 with the 128-channel decoder.
_base_ = '../resnet/upernet_r18-c128_4xb4-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(type='mmext.ResNetV1c', block_conv_cfg=dict(type='mmext.DendriticConv')))
