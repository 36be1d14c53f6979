# Ghost-ResNet-50 (s=2, d=3): every conv inside the bottlenecks (1x1, 3x3, 1x1) is a Ghost
# module; the stem and the downsample path stay static convs (the paper's model also ghosts
# the downsample 1x1, which block_conv_cfg does not reach; docs/designs/ghostnet.md).
# The torchvision R-50 weights of the baseline load into the stem, downsample and norms only.
_base_ = '../resnet/retinanet_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        type='mmext.ResNet',
        block_conv_cfg=dict(type='mmext.GhostModule', ratio=2, dw_size=3)))
