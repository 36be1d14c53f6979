# ResNet-18 (v1c) with every BasicBlock replaced by a multigrid-in-channels
# block (mmext.MGBlock, 64..512 channels, group size 32, coarsening down to the
# first width below 32). Trained from scratch: no MGIC ImageNet weights exist
# and the R-18 v1c checkpoint does not fit these blocks.
# The embedded-data comparison model (docs); R-18 with the 128-channel decoder.
_base_ = '../resnet/upernet_r18-c128_4xb4-160k_ade20k-512x512.py'
model = dict(
    pretrained=None,
    backbone=dict(
        type='mmext.ResNetV1c',
        block_cfg=dict(type='mmext.MGBlock', group_size=32),
        block_cfg_blocks='all'))
