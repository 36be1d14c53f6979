# UperNet PVT-Tiny 160k ADE20K: MMDetection's PyramidVisionTransformer built from
# mmseg (scope 'mmdet.'). PVT has no UperNet recipe; this is mmseg's transformer
# UperNet one (Swin): AdamW 6e-5, wd 0.01, 1500-iter warmup, poly, 8 GPUs x 2.
_base_ = '../_base_/upernet_adamw-poly_8xb2-160k_ade20k-512x512.py'
model = dict(
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
    auxiliary_head=dict(in_channels=320))
optim_wrapper = dict(
    paramwise_cfg=dict(norm_decay_mult=0., custom_keys={'pos_embed': dict(decay_mult=0.)}))
