# RetinaNet with DenseNet-121, 1x COCO. No published detection recipe for DenseNet was found
# (mmdet / mmpretrain have none): this is the ResNet-50 RetinaNet recipe of configs/resnet
# unchanged (SGD lr 0.01, momentum 0.9, weight decay 1e-4, 8 GPUs x 2 images, 12 epochs), with
# its backbone conventions (stem + first stage frozen, BN statistics frozen) and torchvision's
# ImageNet weights (the official release; loaded as they are, no conversion needed).
_base_ = '../resnet/retinanet_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.DenseNet',
        arch='121',
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://download.pytorch.org/models/densenet121-a639ec97.pth')),
    neck=dict(in_channels=[256, 512, 1024, 1024]))
