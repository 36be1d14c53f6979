# UperNet with VAN-B2, 160k ADE20K 512x512 (published 50.1 mIoU, VAN paper Table 10).
# Recipe of the official VAN segmentation code (taken from Swin): AdamW lr 6e-5, betas
# (0.9, 0.999), weight decay 0.01 (none on params named 'norm'), 1500 linear warm-up iterations then
# poly, 8 GPUs x 2 images, drop path 0.1: the shared UperNet base, plus VAN's parameter groups.
_base_ = '../_base_/upernet_adamw-poly_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.VAN',
        arch='b2',
        drop_path_rate=0.1,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/Visual-Attention-Network/VAN-Base-original/'
            'resolve/main/van_base_828.pth.tar')),
    decode_head=dict(in_channels=[64, 128, 320, 512]),
    auxiliary_head=dict(in_channels=320))
# The official custom key: matches the backbone's norm1/norm2/norm{i}/patch_embed
# norms, not the heads' BNs (named 'bn').
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))
