# RetinaNet PVT-Tiny FPN 1x: MMDetection's own config (configs/pvt: AdamW lr 1e-4, wd 1e-4,
# drop path 0.1) and PyramidVisionTransformer, not reimplemented. 'corner' padding of the patch
# embeddings gives ceil(H/s) maps at any input size; the scoped type and the 'Pretrained' init
# type are this repository's conventions (the model zoo's label; --embedded drops 'Pretrained'
# init, which cannot download there).
_base_ = 'mmdet::pvt/retinanet_pvt-t_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        type='mmdet.PyramidVisionTransformer',
        paddings=['corner', 'corner', 'corner', 'corner'],
        init_cfg=dict(type='Pretrained')))
