# Res2Net-50 (26w x 4s) through MMDetection's own Res2Net (v1d layout: deep
# stem, average-pool downsampling), with its released ImageNet weights.
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        type='Res2Net',
        depth=50,
        scales=4,
        base_width=26,
        init_cfg=dict(
            type='Pretrained', checkpoint='open-mmlab://res2net50_v1d_26w_4s')))
