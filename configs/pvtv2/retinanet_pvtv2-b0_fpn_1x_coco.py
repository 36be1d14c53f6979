# RetinaNet PVTv2-B0 FPN 1x: MMDetection's own config (configs/pvt: AdamW lr 1e-4, wd 1e-4,
# drop path 0.1) and PyramidVisionTransformerV2, not reimplemented. The scoped type and the
# 'Pretrained' init type are this repository's conventions (the model zoo's label; --embedded
# drops 'Pretrained' init, which cannot download there).
_base_ = 'mmdet::pvt/retinanet_pvtv2-b0_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        type='mmdet.PyramidVisionTransformerV2',
        init_cfg=dict(type='Pretrained')))
