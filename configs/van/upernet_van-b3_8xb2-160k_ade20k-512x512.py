# UperNet with VAN-B3, 160k ADE20K 512x512: the VAN-B2 recipe of this folder (the official
# segmentation one) with VAN-B3's weights and its official drop path (0.3).
_base_ = './upernet_van-b2_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        arch='b3',
        drop_path_rate=0.3,
        init_cfg=dict(
            checkpoint='https://huggingface.co/Visual-Attention-Network/VAN-Large-original/'
            'resolve/main/van_large_839.pth.tar')),
    decode_head=dict(in_channels=[64, 128, 320, 512]),
    auxiliary_head=dict(in_channels=320))
