# UperNet MogaNet-T 160k ADE20K 512x512: the MogaNet-S recipe of this folder (the official
# UperNet one) with MogaNet-T's weights and the drop path of its detection configs (0.1).
_base_ = './upernet_moganet-small_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        arch='tiny',
        drop_path_rate=0.1,
        init_cfg=dict(
            checkpoint='https://github.com/Westlake-AI/MogaNet/releases/download/'
            'moganet-in1k-weights/moganet_tiny_sz224_8xbs128_ep300.pth.tar')),
    decode_head=dict(in_channels=[32, 64, 128, 256]),
    auxiliary_head=dict(in_channels=128))
