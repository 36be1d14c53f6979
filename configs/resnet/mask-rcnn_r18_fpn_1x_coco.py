# Mask R-CNN with ResNet-18: the README demo's instance segmentation model.
_base_ = './mask-rcnn_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        depth=18, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')),
    neck=dict(in_channels=[64, 128, 256, 512]))
