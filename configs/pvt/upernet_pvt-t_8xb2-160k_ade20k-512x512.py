# UperNet PVT-Tiny 160k ADE20K: MMDetection's PyramidVisionTransformer built from
# mmseg (scope 'mmdet.'). PVT has no UperNet recipe; this is mmseg's transformer
# UperNet one (Swin): AdamW 6e-5, wd 0.01, 1500-iter warmup, poly, 8 GPUs x 2.
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmdet.PyramidVisionTransformer',
        embed_dims=64,
        num_layers=[2, 2, 2, 2],
        paddings=['corner', 'corner', 'corner', 'corner'],
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/whai362/PVT/releases/download/v2/pvt_tiny.pth')),
    decode_head=dict(in_channels=[64, 128, 320, 512]),
    auxiliary_head=dict(in_channels=320, in_index=2))
train_dataloader = dict(batch_size=2)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0., custom_keys={'pos_embed': dict(decay_mult=0.)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=1500, end=160000),
]
