# RetinaNet with VAN-B2, 1x COCO (recipe of retinanet_van-b0_fpn_1x_coco.py).
_base_ = './retinanet_van-b0_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        arch='b2',
        init_cfg=dict(
            checkpoint='https://huggingface.co/Visual-Attention-Network/VAN-Base-original/'
            'resolve/main/van_base_828.pth.tar')),
    neck=dict(in_channels=[64, 128, 320, 512]))
