# RetinaNet with DenseNet-169, 1x COCO (recipe of retinanet_densenet-121_fpn_1x_coco.py).
_base_ = './retinanet_densenet-121_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        arch='169',
        init_cfg=dict(
            checkpoint='https://download.pytorch.org/models/densenet169-b2777c0a.pth')),
    neck=dict(in_channels=[256, 512, 1280, 1664]))
