# Mask R-CNN MPViT-S FPN 1x COCO, the recipe of the official Detectron2 configs
# (youngwanLEE/MPViT detectron2/configs/maskrcnn): SyncBN backbone, drop path 0.2,
# AdamW 1e-4 / wd 0.05 on every parameter, full-model grad clip 1.0, 1000-iter warmup.
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.MPViT',
        arch='small',
        drop_path_rate=0.2,
        norm_cfg=norm_cfg,
        norm_eval=False,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://dl.dropbox.com/s/y3dnmmy8h4npz7a/mpvit_small.pth')),
    neck=dict(in_channels=[128, 216, 288, 288]))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=1.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
