# UperNet HorNet-B (7x7) 160k ADE20K 512x512: the HorNet-T recipe of this folder with the
# drop path of the official upernet_hornet_base_7x7_512_160k_ade20k.py (0.4).
_base_ = './upernet_hornet-tiny_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.4,
        init_cfg=dict(
            checkpoint='https://download.openmmlab.com/mmclassification/v0/hornet/'
            'hornet-base_3rdparty_in1k_20220915-a06176bb.pth')),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
