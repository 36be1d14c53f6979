# RetinaNet MogaNet-B FPN 1x COCO (published AP in docs/designs/moganet.md). The official
# detection/configs/moganet/retinanet_moganet_base_fpn_1x_coco.py is the MogaNet-S recipe
# of this folder with MogaNet-B's weights and drop path (0.2).
_base_ = './retinanet_moganet-small_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.2,
        init_cfg=dict(
            checkpoint='https://github.com/Westlake-AI/MogaNet/releases/download/'
            'moganet-in1k-weights/moganet_base_sz224_8xbs128_ep300.pth.tar')),
    neck=dict(in_channels=[64, 160, 320, 512]))
