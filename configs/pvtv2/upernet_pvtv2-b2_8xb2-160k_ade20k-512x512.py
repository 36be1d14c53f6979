# UperNet PVTv2-B2 160k ADE20K: MMDetection's PyramidVisionTransformerV2 built from
# mmseg (scope 'mmdet.'). PVTv2 has no UperNet recipe; this is mmseg's transformer
# UperNet one (Swin): AdamW 6e-5, wd 0.01, 1500-iter warmup, poly, 8 GPUs x 2.
_base_ = '../_base_/upernet_adamw-poly_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmdet.PyramidVisionTransformerV2',
        embed_dims=64,
        num_layers=[3, 4, 6, 3],
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b2.pth')),
    decode_head=dict(in_channels=[64, 128, 320, 512]),
    auxiliary_head=dict(in_channels=320))
optim_wrapper = dict(paramwise_cfg=dict(norm_decay_mult=0.))
