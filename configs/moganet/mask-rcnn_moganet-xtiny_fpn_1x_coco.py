# Mask R-CNN MogaNet-XT FPN 1x COCO (published AP in docs/designs/moganet.md). The official
# detection/configs/moganet/mask_rcnn_moganet_xtiny_fpn_1x_coco.py is the MogaNet-S recipe
# of this folder with MogaNet-XT's weights and drop path (0.05).
_base_ = './mask-rcnn_moganet-small_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        arch='xtiny',
        drop_path_rate=0.05,
        init_cfg=dict(
            checkpoint='https://github.com/Westlake-AI/MogaNet/releases/download/'
            'moganet-in1k-weights/moganet_xtiny_sz224_8xbs128_ep300.pth.tar')),
    neck=dict(in_channels=[32, 64, 96, 192]))
