# UperNet with VAN-B0, 160k ADE20K 512x512: the VAN-B2 recipe of this folder (the official
# segmentation one) with VAN-B0's weights and its official drop path (0.1).
_base_ = './upernet_van-b2_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        arch='b0',
        drop_path_rate=0.1,
        init_cfg=dict(
            checkpoint='https://huggingface.co/Visual-Attention-Network/VAN-Tiny-original/'
            'resolve/main/van_tiny_754.pth.tar')),
    decode_head=dict(in_channels=[32, 64, 160, 256]),
    auxiliary_head=dict(in_channels=160))
