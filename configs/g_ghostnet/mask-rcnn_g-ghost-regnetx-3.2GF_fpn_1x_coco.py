# Mask R-CNN with G-Ghost RegNetX-3.2GF, 1x COCO. G-GhostNet publishes no detection recipe:
# this is MMDetection's RegNetX-3.2GF Mask R-CNN (inherited: FPN on the same widths 96 / 192 /
# 432 / 1008, SGD lr 0.02 with weight decay 5e-5, stem + layer1 frozen, BN in eval mode) with
# the G-Ghost backbone, on torchvision's RGB normalisation that the official weights were
# trained with (mmdet's RegNet configs use pycls's BGR one).
_base_ = 'mmdet::regnet/mask-rcnn_regnetx-3.2GF_fpn_1x_coco.py'
model = dict(
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone=dict(
        _delete_=True,
        type='mmext.GGhostRegNet',
        arch='3.2gf',
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        # https://github.com/huawei-noah/Efficient-AI-Backbones/releases/tag/g_ghost_regnet
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/g_ghost_regnet_3.2g_77.8.pth')))
