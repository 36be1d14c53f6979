# Ghost-ResNet-50 (s=2, d=3) on mmseg's ResNet-50-v1c UperNet baseline: every bottleneck
# conv is a Ghost module (its norms follow the host's SyncBN); stem and downsample path static.
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        type='mmext.ResNetV1c',
        block_conv_cfg=dict(type='mmext.GhostModule', ratio=2, dw_size=3)))
