# QNN ResNet-50 (v1c), 1-bit W / 2-bit A, in UperNet; the input BNs take the
# segmentor's SyncBN.
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        type='mmext.ResNetV1c',
        block_conv_cfg=dict(type='mmext.QuantConv', weight_bits=1, activation_bits=2)))
