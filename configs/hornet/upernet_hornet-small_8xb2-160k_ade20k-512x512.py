# UperNet HorNet-S (7x7) 160k ADE20K 512x512: the HorNet-T recipe of this folder with the
# drop path of the official upernet_hornet_small_7x7_512_160k_ade20k.py (0.3).
_base_ = './upernet_hornet-tiny_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.3,
        init_cfg=dict(
            checkpoint='https://download.openmmlab.com/mmclassification/v0/hornet/'
            'hornet-small_3rdparty_in1k_20220915-5935f60f.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
