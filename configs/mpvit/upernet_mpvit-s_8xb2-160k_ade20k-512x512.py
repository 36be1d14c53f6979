# UperNet MPViT-S 160k ADE20K 512x512, the official mmseg recipe
# (youngwanLEE/MPViT semantic_segmentation/configs/mpvit/upernet): SyncBN, drop path 0.2,
# AdamW 6e-5 / wd 0.01 on every parameter, 1500-iter linear warmup then poly, 8 GPUs x 2.
_base_ = '../_base_/upernet_adamw-poly_8xb2-160k_ade20k-512x512.py'
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.MPViT',
        arch='small',
        drop_path_rate=0.2,
        norm_cfg=norm_cfg,
        norm_eval=False,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://dl.dropbox.com/s/y3dnmmy8h4npz7a/mpvit_small.pth')),
    decode_head=dict(in_channels=[128, 216, 288, 288]),
    auxiliary_head=dict(in_channels=288))
