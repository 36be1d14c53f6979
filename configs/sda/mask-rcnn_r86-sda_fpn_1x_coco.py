# SDA-ResNet-86: selective depth attention over the blocks of each stage.
# Depth 86 ([5, 6, 12, 5], grouped 3x3) is the paper's detection setting.
# No ImageNet weights in a loadable layout are bundled: set
# backbone.init_cfg to a converted checkpoint when you have one.
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.SDAResNet',
        depth=86,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch',
        init_cfg=None))
