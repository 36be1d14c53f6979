# UperNet HAT-Net-Tiny 160k ADE20K 512x512. The paper's ADE20K numbers use Semantic FPN
# (PVT's protocol); this is mmseg's transformer UperNet recipe (Swin): AdamW 6e-5,
# wd 0.01 (none on norms), 1500-iter linear warmup, poly, 8 GPUs x 2.
_base_ = '../_base_/upernet_adamw-poly_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.HATNet',
        arch='tiny',
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/yun-liu/HAT-Net/releases/download/v2.0/'
            'HAT-Net_Tiny.pth')),
    decode_head=dict(in_channels=[48, 96, 240, 384]),
    auxiliary_head=dict(in_channels=240))
optim_wrapper = dict(paramwise_cfg=dict(norm_decay_mult=0.))
