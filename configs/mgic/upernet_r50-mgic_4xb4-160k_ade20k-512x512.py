# ResNet-50 (v1c) with every bottleneck replaced by a multigrid-in-channels
# block (mmext.MGBlock at the bottleneck's output width, 256..2048 channels;
# group size 32, coarsening down to the first width below 32: the official
# driver's defaults). MGIC releases no ImageNet weights and the segmentor's
# R-50 v1c checkpoint does not fit these blocks: the backbone trains from
# scratch (no segmentor-level `pretrained`). The MG blocks take the host's
# SyncBN; the rest is mmseg's R-50 UperNet recipe of configs/resnet.
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(
    pretrained=None,
    backbone=dict(
        type='mmext.ResNetV1c',
        block_cfg=dict(type='mmext.MGBlock', group_size=32),
        block_cfg_blocks='all'))
