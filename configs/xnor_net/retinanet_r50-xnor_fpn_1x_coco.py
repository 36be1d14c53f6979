# XNOR-Net ResNet-50: every convolution inside the bottlenecks (1x1, 3x3, 1x1)
# is a BinaryConv with binary weights and binary inputs (each behind its own
# non-affine input BN, the paper's BN -> BinActive -> conv); the stem, the
# downsample shortcuts, FPN and the heads stay full precision.
# Training starts from the full-precision ImageNet weights (binarised on the
# fly). The full-precision BN statistics do not describe binary convolutions,
# so every BN trains (norm_eval=False) and only the full-precision stem is
# frozen (frozen_stages=0 instead of the baseline's 1).
_base_ = '../resnet/retinanet_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        type='mmext.ResNet',
        frozen_stages=0,
        norm_eval=False,
        block_conv_cfg=dict(type='mmext.BinaryConv', mode='xnor')))
