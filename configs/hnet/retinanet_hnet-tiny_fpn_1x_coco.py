# RetinaNet with HNet-tiny (Harmonic Network, Worrall et al. CVPR 2017), 1x COCO. The paper
# has no detection experiment and no ImageNet weights exist, so the backbone trains from
# scratch: every stage and its magnitude BN trained (no frozen stages, no norm_eval), AdamW
# lr 1e-4, weight decay 1e-4 (the PVT / VAN detection recipe of this repository; the
# paper's MNIST recipe is Adam lr 0.0076 on 28x28 digits). 8 GPUs x 2 images, 12 epochs.
_base_ = '../resnet/retinanet_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.HNet',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False),
    # Stacked magnitudes of orders 0 and 1: 2 x (16, 32, 64, 128) channels.
    neck=dict(in_channels=[32, 64, 128, 256]))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001))
