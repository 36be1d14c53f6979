# Mask R-CNN with HNet-tiny, 1x COCO: the recipe of ./retinanet_hnet-tiny_fpn_1x_coco.py
# (from scratch, no frozen stages or BN statistics, AdamW lr 1e-4, weight decay 1e-4).
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.HNet',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False),
    neck=dict(in_channels=[32, 64, 128, 256]))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001))
