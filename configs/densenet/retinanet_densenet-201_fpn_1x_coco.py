# RetinaNet with DenseNet-201, 1x COCO (recipe of retinanet_densenet-121_fpn_1x_coco.py).
_base_ = './retinanet_densenet-121_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        arch='201',
        init_cfg=dict(
            checkpoint='https://download.pytorch.org/models/densenet201-c1103571.pth')),
    neck=dict(in_channels=[256, 512, 1792, 1920]))
