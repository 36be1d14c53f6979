# RetinaNet MViTv2-T FPN 1x. The paper has no RetinaNet result; the backbone
# optimizer is its Mask R-CNN one (Detectron2 projects/MViTv2: AdamW 1.6e-4 for
# 64 images, wd 0.1, no decay on norms / rel-pos tables, AMP, drop path 0.2).
_base_ = '../resnet/retinanet_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.MViTv2',
        arch='tiny',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://dl.fbaipublicfiles.com/mvit/mvitv2_models/MViTv2_T_in1k.pyth')),
    neck=dict(in_channels=[96, 192, 384, 768]))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=1.6e-4, betas=(0.9, 0.999), weight_decay=0.1),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys={'rel_pos_h': dict(decay_mult=0.), 'rel_pos_w': dict(decay_mult=0.)}))
auto_scale_lr = dict(enable=False, base_batch_size=64)
