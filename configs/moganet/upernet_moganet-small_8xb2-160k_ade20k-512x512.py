# UperNet MogaNet-S 160k ADE20K 512x512 (published 49.2 mIoU, docs/designs/moganet.md).
# Recipe of the official segmentation/configs/upernet/moganet/
# upernet_moganet_small_512x512_160k_ade20k.py: AdamW 6e-5, wd 0.01, no decay on layer scale /
# sigma / norms, 1500-iter linear warmup, poly; 8 GPUs x 2.
_base_ = '../_base_/upernet_adamw-poly_8xb2-160k_ade20k-512x512.py'
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
    decode_head=dict(in_channels=[64, 128, 320, 512]),
    auxiliary_head=dict(in_channels=320))
optim_wrapper = dict(
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys={
            'layer_scale': dict(decay_mult=0.),
            'scale': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.)
        }))
