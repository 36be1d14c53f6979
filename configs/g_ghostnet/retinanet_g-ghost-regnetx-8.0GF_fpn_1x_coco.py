# RetinaNet with G-Ghost RegNetX-8.0GF, 1x COCO: the 3.2GF config of this folder (mmdet's
# RegNetX RetinaNet recipe) with the 8.0GF variant, its stage widths and its released weights.
_base_ = './retinanet_g-ghost-regnetx-3.2GF_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        arch='8.0gf', init_cfg=dict(checkpoint='checkpoints/g_ghost_regnet_8.0g_79.0.pth')),
    neck=dict(in_channels=[80, 240, 720, 1920]))
