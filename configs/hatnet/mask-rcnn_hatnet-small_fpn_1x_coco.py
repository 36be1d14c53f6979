# Mask R-CNN HAT-Net-Small FPN 1x COCO. HAT-Net follows PVT's detection recipe:
# AdamW lr 1e-4, weight decay 1e-4, batch 16 (8 GPUs x 2), 12 epochs.
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.HATNet',
        arch='small',
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/yun-liu/HAT-Net/releases/download/v2.0/'
            'HAT-Net_Small.pth')),
    neck=dict(in_channels=[64, 128, 320, 512]))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-4))
