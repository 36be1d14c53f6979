# RetinaNet with GhostNet 1.0x (the released ImageNet width), otherwise the 1.1x config.
_base_ = './retinanet_ghostnet-1.1x_fpn_1x_coco.py'
model = dict(backbone=dict(arch='1.0x'), neck=dict(in_channels=[24, 40, 112, 960]))
