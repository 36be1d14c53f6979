# UperNet with HNet-tiny, 160k ADE20K 512x512: the AdamW + poly recipe of the whole-network
# backbones (configs/_base_), from scratch (no weights exist; SyncBN on the magnitudes, as the
# base's decoder). The heads read the stacked magnitudes: 2 x (16, 32, 64, 128) channels.
_base_ = '../_base_/upernet_adamw-poly_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.HNet',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False),
    decode_head=dict(in_channels=[32, 64, 128, 256]),
    auxiliary_head=dict(in_channels=128))
