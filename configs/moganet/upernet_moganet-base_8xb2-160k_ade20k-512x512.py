# UperNet MogaNet-B 160k ADE20K 512x512: the MogaNet-S recipe of this folder (the official
# UperNet one) with MogaNet-B's weights and the drop path of its detection configs (0.2).
_base_ = './upernet_moganet-small_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.2,
        init_cfg=dict(
            checkpoint='https://github.com/Westlake-AI/MogaNet/releases/download/'
            'moganet-in1k-weights/moganet_base_sz224_8xbs128_ep300.pth.tar')),
    decode_head=dict(in_channels=[64, 160, 320, 512]),
    auxiliary_head=dict(in_channels=320))
