# UperNet with G-Ghost RegNetX-3.2GF, 160k ADE20K 512x512. G-GhostNet publishes no
# segmentation recipe and mmseg has no RegNet one: this is the ResNet-50 UperNet recipe of
# configs/resnet unchanged (mmseg's: SGD lr 0.01, momentum 0.9, weight decay 5e-4, poly,
# 4 GPUs x 4 images, SyncBN, BN trained), with the official ImageNet weights through the
# backbone's init_cfg (hence no segmentor-level `pretrained`, which names the R-50 one).
# mmseg's data preprocessor already has the RGB normalisation the weights were trained with.
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmext.GGhostRegNet',
        arch='3.2gf',
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        # https://github.com/huawei-noah/Efficient-AI-Backbones/releases/tag/g_ghost_regnet
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/g_ghost_regnet_3.2g_77.8.pth')),
    decode_head=dict(in_channels=[96, 192, 432, 1008]),
    auxiliary_head=dict(in_channels=432))
