# Dendritic ResNet-50: every conv inside the bottlenecks (1x1, 3x3, 1x1) is a
# DendriticConv, one ReLU with its own bias per (input channel, output filter)
# connection; stem and downsample stay plain convs. The dendritic biases start
# at 0, and every block conv reads a ReLU output, so the ImageNet weights load
# (all but the biases) and start as the plain R-50. The rest is the R-50
# Mask R-CNN recipe of configs/resnet.
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(type='mmext.ResNet', block_conv_cfg=dict(type='mmext.DendriticConv')))
