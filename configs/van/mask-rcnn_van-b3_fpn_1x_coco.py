# Mask R-CNN with VAN-B3, 1x COCO (recipe of mask-rcnn_van-b0_fpn_1x_coco.py).
_base_ = './mask-rcnn_van-b0_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        arch='b3',
        init_cfg=dict(
            checkpoint='https://huggingface.co/Visual-Attention-Network/VAN-Large-original/'
            'resolve/main/van_large_839.pth.tar')),
    neck=dict(in_channels=[64, 128, 320, 512]))
