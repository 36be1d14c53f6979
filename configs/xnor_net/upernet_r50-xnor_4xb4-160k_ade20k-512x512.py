# XNOR-Net ResNet-50 (v1c) in UperNet: binary bottleneck convolutions; the deep
# stem, the shortcuts and the decoder stay full precision. The input BNs take the
# segmentor's SyncBN (non-affine, eps 1e-4).
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        type='mmext.ResNetV1c',
        block_conv_cfg=dict(type='mmext.BinaryConv', mode='xnor')))
