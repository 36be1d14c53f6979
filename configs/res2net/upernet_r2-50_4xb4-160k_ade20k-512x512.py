# Res2Net-50 (26w x 4s) through MMDetection's own Res2Net (v1d layout: deep
# stem, average-pool downsampling), with its released ImageNet weights.
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
# mmseg has no Res2Net; the mmdet one is built across scopes.
model = dict(
    pretrained='open-mmlab://res2net50_v1d_26w_4s',
    backbone=dict(
        _delete_=True,
        type='mmdet.Res2Net',
        depth=50,
        scales=4,
        base_width=26,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        style='pytorch'))
