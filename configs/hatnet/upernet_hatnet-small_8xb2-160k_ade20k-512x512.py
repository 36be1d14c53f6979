# UperNet HAT-Net-Small 160k ADE20K 512x512: the HAT-Net-Tiny recipe of this folder
# (mmseg's transformer UperNet one) with HAT-Net-Small's weights.
_base_ = './upernet_hatnet-tiny_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        arch='small',
        init_cfg=dict(
            checkpoint='https://github.com/yun-liu/HAT-Net/releases/download/v2.0/'
            'HAT-Net_Small.pth')),
    decode_head=dict(in_channels=[64, 128, 320, 512]),
    auxiliary_head=dict(in_channels=320))
