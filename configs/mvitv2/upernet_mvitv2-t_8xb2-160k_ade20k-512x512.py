# UperNet MViTv2-T 160k ADE20K. The paper has no segmentation result; this is
# mmseg's transformer UperNet recipe (Swin: AdamW 6e-5, wd 0.01, 1500-iter
# warmup, poly, 8 GPUs x 2) with the paper's no-decay groups (norms, rel-pos tables).
_base_ = '../_base_/upernet_adamw-poly_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.MViTv2',
        arch='tiny',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://dl.fbaipublicfiles.com/mvit/mvitv2_models/MViTv2_T_in1k.pyth')),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
optim_wrapper = dict(
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys={'rel_pos_h': dict(decay_mult=0.), 'rel_pos_w': dict(decay_mult=0.)}))
