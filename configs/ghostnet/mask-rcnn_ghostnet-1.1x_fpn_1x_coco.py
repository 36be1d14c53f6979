# Mask R-CNN with GhostNet 1.1x, 1x COCO. The paper has no Mask R-CNN; 1.1x is the width of
# both its detection rows (RetinaNet and the two-stage Faster R-CNN), so the two-stage
# config keeps it. SGD 1x of the R-50 baseline; BN statistics train (no ImageNet weights set,
# see the RetinaNet config).
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.GhostNet',
        arch='1.1x',
        out_indices=(2, 4, 6, 9),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False),
    neck=dict(in_channels=[28, 44, 124, 1056]))
