# RetinaNet MogaNet-S FPN 1x COCO (published 1x box AP in docs/designs/moganet.md).
# Recipe of the official detection/configs/moganet/retinanet_moganet_small_fpn_1x_coco.py:
# AdamW lr 1e-4, wd 0.05, no decay on layer scale / sigma / norms, 8 GPUs x 2.
_base_ = '../resnet/retinanet_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.MogaNet',
        arch='small',
        drop_path_rate=0.1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/Westlake-AI/MogaNet/releases/download/'
            'moganet-in1k-weights/moganet_small_sz224_8xbs128_ep300.pth.tar')),
    neck=dict(in_channels=[64, 128, 320, 512]))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys={
            'layer_scale': dict(decay_mult=0.),
            'scale': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.)
        }))
