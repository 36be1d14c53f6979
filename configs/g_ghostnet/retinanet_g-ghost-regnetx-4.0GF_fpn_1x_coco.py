# RetinaNet with G-Ghost RegNetX-4.0GF, 1x COCO: the 3.2GF config of this folder (mmdet's
# RegNetX RetinaNet recipe) with the 4.0GF variant, its stage widths and its released weights.
_base_ = './retinanet_g-ghost-regnetx-3.2GF_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        arch='4.0gf', init_cfg=dict(checkpoint='checkpoints/g_ghost_regnet_4.0g_78.6.pth')),
    neck=dict(in_channels=[80, 240, 560, 1360]))
