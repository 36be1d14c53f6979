# UperNet with GhostNet 1.0x, 160k ADE20K 512x512. The paper has no segmentation recipe;
# the shared AdamW + poly recipe of mmext's whole-network backbones is used unchanged.
# Outputs: blocks (2, 4, 6, 9) -> s4..s32; the auxiliary head reads the s16 map (112 ch).
_base_ = '../_base_/upernet_adamw-poly_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.GhostNet',
        arch='1.0x',
        out_indices=(2, 4, 6, 9),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False),
    decode_head=dict(in_channels=[24, 40, 112, 960]),
    auxiliary_head=dict(in_channels=112))
