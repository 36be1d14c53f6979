# Mask R-CNN HorNet-T (7x7) FPN 1x COCO. The paper reports Cascade Mask R-CNN 3x only; this
# uses its detection optimizer (raoyongming/HorNet object_detection/configs/hornet: AdamW lr 2e-4,
# wd 0.05, drop path 0.4 for T, no decay on 1-D params) on the 1x schedule; 8 GPUs x 2.
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.HorNet',
        arch='tiny',
        drop_path_rate=0.4,
        out_indices=(0, 1, 2, 3),
        # The official ImageNet-1k weights as re-hosted by mmpretrain (see docs/designs/hornet.md).
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://download.openmmlab.com/mmclassification/v0/hornet/'
            'hornet-tiny_3rdparty_in1k_20220915-0e8eedff.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))
# No decay on norms, biases and layer scales (every 1-D tensor), as the official optimizer
# constructor; its layer-wise lr decay (0.7) has no by-name equivalent here.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        bias_decay_mult=0.,
        custom_keys={'gamma1': dict(decay_mult=0.), 'gamma2': dict(decay_mult=0.)}))
