# Mask R-CNN HAT-Net-Small FPN 1x COCO: the HAT-Net-Tiny recipe of this folder (PVT's detection
# recipe) with HAT-Net-Small's weights.
_base_ = './mask-rcnn_hatnet-tiny_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        arch='small',
        init_cfg=dict(
            checkpoint='https://github.com/yun-liu/HAT-Net/releases/download/v2.0/'
            'HAT-Net_Small.pth')),
    neck=dict(in_channels=[64, 128, 320, 512]))
