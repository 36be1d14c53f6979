# Stochastic depth on ResNet-50: the residual branch of block i of the 16
# bottlenecks is dropped per image with probability 0.1 * i / 15 in training
# (timm's linear rule; the frozen stage 1 stays in eval mode and drops nothing).
# 0.1 is mmext's choice, not a published setting for detectors. The rest is
# the R-50 RetinaNet recipe of configs/resnet.
_base_ = '../resnet/retinanet_r50_fpn_1x_coco.py'
model = dict(backbone=dict(type='mmext.ResNet', drop_path_rate=0.1))
