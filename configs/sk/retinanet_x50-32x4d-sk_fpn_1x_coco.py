# SKNet-50: ResNeXt-50 (32x4d) whose grouped 3x3 is the selective-kernel unit
# (3x3 and dilated 3x3 branches, G=32 from the host's groups, r=16, L=32).
_base_ = '../resnet/retinanet_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        type='mmdet.ResNeXt',
        groups=32,
        base_width=4,
        dcn=dict(type='mmext.SKConv'),
        stage_with_dcn=(True, True, True, True),
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://resnext50_32x4d')))
