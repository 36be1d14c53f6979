# Mask R-CNN MogaNet-T FPN 1x COCO (published AP in docs/designs/moganet.md). The official
# detection/configs/moganet/mask_rcnn_moganet_tiny_fpn_1x_coco.py is the MogaNet-S recipe
# of this folder with MogaNet-T's weights and drop path (0.1).
_base_ = './mask-rcnn_moganet-small_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        arch='tiny',
        drop_path_rate=0.1,
        init_cfg=dict(
            checkpoint='https://github.com/Westlake-AI/MogaNet/releases/download/'
            'moganet-in1k-weights/moganet_tiny_sz224_8xbs128_ep300.pth.tar')),
    neck=dict(in_channels=[32, 64, 128, 256]))
