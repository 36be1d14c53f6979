# UperNet MPViT-XS 160k ADE20K 512x512: the MPViT-S recipe of this folder (the official mmseg
# one) with MPViT-XS's weights and the drop path of its detection configs (0.1).
_base_ = './upernet_mpvit-s_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        arch='xsmall',
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint='https://dl.dropbox.com/s/vvpq2m474g8tvyq/mpvit_xsmall.pth')),
    decode_head=dict(in_channels=[128, 192, 256, 256]),
    auxiliary_head=dict(in_channels=256))
