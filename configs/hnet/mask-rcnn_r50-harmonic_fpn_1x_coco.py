# HarmonicConv-ResNet-50 in Mask R-CNN: the backbone of ./retinanet_r50-harmonic_fpn_1x_coco.py
# (every bottleneck 3x3 a harmonic convolution of orders 0 and 1 through the dcn slot).
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        type='mmext.ResNet',
        dcn=dict(type='mmext.HarmonicConv', max_order=1),
        stage_with_dcn=(True, True, True, True)))
