# RetinaNet ResNeXt-50 (32x4d) FPN 1x: the reference of the SK configs, whose
# SKNet-50 is this backbone with selective-kernel units as the grouped 3x3s.
# The R-50 recipe with mmdet's ResNeXt and its ImageNet weights.
_base_ = './retinanet_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        type='mmdet.ResNeXt',
        groups=32,
        base_width=4,
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://resnext50_32x4d')))
