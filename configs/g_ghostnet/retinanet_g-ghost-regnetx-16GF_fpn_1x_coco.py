# RetinaNet with G-Ghost RegNetX-16GF, 1x COCO: the 3.2GF config of this folder (mmdet's
# RegNetX RetinaNet recipe) with the 16GF variant, its stage widths and its released weights.
_base_ = './retinanet_g-ghost-regnetx-3.2GF_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        arch='16gf', init_cfg=dict(checkpoint='checkpoints/g_ghost_regnet_16.0g_79.9.pth')),
    neck=dict(in_channels=[256, 512, 896, 2048]))
