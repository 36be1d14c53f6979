# SDA on ResNet-18 with the v1c deep stem of the baseline.
# The embedded-data comparison model (docs); R-18 with the 128-channel decoder.
_base_ = '../resnet/upernet_r18-c128_4xb4-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.SDAResNet',
        depth=18,
        deep_stem=True,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        style='pytorch'))
