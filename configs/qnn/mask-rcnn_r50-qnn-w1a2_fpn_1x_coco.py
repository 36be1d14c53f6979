# QNN ResNet-50 (1-bit W / 2-bit A) in Mask R-CNN; as
# retinanet_r50-qnn-w1a2_fpn_1x_coco.py.
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        type='mmext.ResNet',
        frozen_stages=0,
        norm_eval=False,
        block_conv_cfg=dict(type='mmext.QuantConv', weight_bits=1, activation_bits=2)))
