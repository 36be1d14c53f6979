# RetinaNet with ThreshNet-79, 1x COCO (recipe of retinanet_threshnet-95_fpn_1x_coco.py:
# the ResNet-50 recipe, backbone trained from scratch; no ImageNet weights exist).
_base_ = './retinanet_threshnet-95_fpn_1x_coco.py'
model = dict(backbone=dict(arch='79'), neck=dict(in_channels=[128, 192, 480, 960]))
