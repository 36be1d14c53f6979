# RetinaNet with DenseNet-161 (growth 48, 96-channel stem), 1x COCO (recipe of
# retinanet_densenet-121_fpn_1x_coco.py).
_base_ = './retinanet_densenet-121_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        arch='161',
        init_cfg=dict(
            checkpoint='https://download.pytorch.org/models/densenet161-8d451a50.pth')),
    neck=dict(in_channels=[384, 768, 2112, 2208]))
