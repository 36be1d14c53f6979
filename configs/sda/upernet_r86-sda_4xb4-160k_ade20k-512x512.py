# SDA-ResNet-86: selective depth attention over the blocks of each stage.
# Depth 86 ([5, 6, 12, 5], grouped 3x3) is the paper's detection setting.
# No ImageNet weights in a loadable layout are bundled: set
# backbone.init_cfg to a converted checkpoint when you have one.
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmext.SDAResNet',
        depth=86,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        style='pytorch'))
