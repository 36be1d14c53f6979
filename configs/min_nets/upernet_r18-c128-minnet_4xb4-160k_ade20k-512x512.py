# Min blocks (q = 2) as the first BasicBlock of each stage of ResNet-18 (v1c).
# The embedded-data comparison model (docs); R-18 with the 128-channel decoder.
_base_ = '../resnet/upernet_r18-c128_4xb4-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        type='mmext.ResNetV1c',
        block_cfg=dict(type='mmext.MinBlock', q=2),
        block_cfg_blocks='first'))
