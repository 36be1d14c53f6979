# Mask R-CNN with MobileNetV2 (MMDetection's class), 1x COCO: the ResNet-50 Mask R-CNN recipe of
# configs/resnet unchanged (SGD lr 0.02, 8 GPUs x 2 images, 12 epochs; no published Mask R-CNN
# recipe with MobileNetV2 was found), the backbone as in retinanet_mobilenetv2_fpn_1x_coco.py.
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
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
