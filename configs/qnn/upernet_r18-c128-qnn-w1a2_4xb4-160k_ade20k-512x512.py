# QNN (1-bit W / 2-bit A) for both 3x3 convolutions of every BasicBlock; stem and
# shortcuts full precision. The embedded-data comparison model (docs); R-18 with
# the 128-channel decoder.
_base_ = '../resnet/upernet_r18-c128_4xb4-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        type='mmext.ResNetV1c',
        block_conv_cfg=dict(type='mmext.QuantConv', weight_bits=1, activation_bits=2)))
