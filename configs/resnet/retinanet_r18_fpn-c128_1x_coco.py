# RetinaNet R-18 with a 128-channel FPN and head (2 stacked convs instead of 4):
# the README demo model, sized so that it learns within minutes on a 2-core CPU.
# The full-width R-18 model is retinanet_r18_fpn_1x_coco.py.
_base_ = './retinanet_r18_fpn_1x_coco.py'
model = dict(
    neck=dict(out_channels=128),
    bbox_head=dict(in_channels=128, feat_channels=128, stacked_convs=2))
