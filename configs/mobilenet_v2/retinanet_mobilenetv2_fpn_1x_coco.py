# RetinaNet with MobileNetV2 (MMDetection's class), 1x COCO. mmdet ships MobileNetV2 only with
# SSDLite and YOLOv3 (their own long recipes); no RetinaNet / Mask R-CNN recipe was found, so
# this is the ResNet-50 RetinaNet recipe of configs/resnet unchanged (SGD lr 0.01, 8 GPUs x 2
# images, 12 epochs) with its backbone conventions (stem + layer1 frozen, BN statistics frozen)
# and the ImageNet weights mmdet's YOLOv3-MobileNetV2 starts from (already in mmdet's layout).
# mmdet 3.3.0's out_indices count [layer1 .. layer7, conv2]: (1, 2, 4, 7) are layer2 (24 ch,
# stride 4), layer3 (32, s8), layer5 (96, s16) and the final 1x1 conv2 (1280, s32).
_base_ = '../resnet/retinanet_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmdet.MobileNetV2',
        widen_factor=1.0,
        out_indices=(1, 2, 4, 7),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://mmdet/mobilenet_v2')),
    neck=dict(in_channels=[24, 32, 96, 1280]))
