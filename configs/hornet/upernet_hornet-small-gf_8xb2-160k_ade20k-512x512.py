# UperNet HorNet-S (GF) 160k ADE20K 512x512: the official upernet_hornet_small_gf_512_160k_ade20k.py
# recipe: the 7x7 one with drop path 0.3, gradient clipping (max norm 1) and global filters
# stored at 24x13 / 12x7 (the checkpoint's 14x8 / 7x4 resampled when loaded).
_base_ = './upernet_hornet-small_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        arch='small-gf',
        drop_path_rate=0.3,
        gf_sizes=[None, None, (24, 13), (12, 7)],
        init_cfg=dict(
            checkpoint='https://download.openmmlab.com/mmclassification/v0/hornet/'
            'hornet-small-gf_3rdparty_in1k_20220915-649ca492.pth')))
optim_wrapper = dict(clip_grad=dict(max_norm=1, norm_type=2))
