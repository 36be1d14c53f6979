# UperNet HorNet-B (GF) 160k ADE20K 512x512: the official upernet_hornet_base_gf_512_160k_ade20k.py
# recipe: the 7x7 one with drop path 0.5, gradient clipping (max norm 1) and global filters
# stored at 24x13 / 12x7 (the checkpoint's 14x8 / 7x4 resampled when loaded).
_base_ = './upernet_hornet-base_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        arch='base-gf',
        drop_path_rate=0.5,
        gf_sizes=[None, None, (24, 13), (12, 7)],
        init_cfg=dict(
            checkpoint='https://download.openmmlab.com/mmclassification/v0/hornet/'
            'hornet-base-gf_3rdparty_in1k_20220915-82c06fa7.pth')))
optim_wrapper = dict(clip_grad=dict(max_norm=1, norm_type=2))
