# UperNet HorNet-T (GF) 160k ADE20K 512x512 (published 49.2 mIoU). Recipe of the official
# upernet_hornet_tiny_gf_512_160k_ade20k.py: the 7x7 recipe plus gradient clipping (max norm 1) and
# global filters stored at 24x13 / 12x7 (the checkpoint's 14x8 / 7x4 resampled when loaded).
_base_ = './upernet_hornet-tiny_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        arch='tiny-gf',
        gf_sizes=[None, None, (24, 13), (12, 7)],
        init_cfg=dict(
            checkpoint='https://download.openmmlab.com/mmclassification/v0/hornet/'
            'hornet-tiny-gf_3rdparty_in1k_20220915-4c35a66b.pth')))
optim_wrapper = dict(clip_grad=dict(max_norm=1, norm_type=2))
