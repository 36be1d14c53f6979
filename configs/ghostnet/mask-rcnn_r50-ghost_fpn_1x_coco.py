# Ghost-ResNet-50 (s=2, d=3) in Mask R-CNN: the RetinaNet config's backbone
# (retinanet_r50-ghost_fpn_1x_coco.py) on the Mask R-CNN R-50 baseline.
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        type='mmext.ResNet',
        block_conv_cfg=dict(type='mmext.GhostModule', ratio=2, dw_size=3)))
