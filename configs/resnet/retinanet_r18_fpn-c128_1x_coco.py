# RetinaNet R-18 with a 128-channel FPN and head (2 stacked convs instead of 4):
# the README demo model, sized so that it learns within minutes on a 2-core CPU.
# Trained from scratch there (no pretrained weights are reachable), so the head
# gets GroupNorm and the GIoU box loss, both standard mmdet options that make
# the first few thousand images count. The full-width R-18 model is
# retinanet_r18_fpn_1x_coco.py.
_base_ = './retinanet_r18_fpn_1x_coco.py'
model = dict(
    neck=dict(out_channels=128),
    bbox_head=dict(
        in_channels=128,
        feat_channels=128,
        stacked_convs=2,
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),
        reg_decoded_bbox=True,
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0)))
