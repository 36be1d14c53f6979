# XNOR-Net ResNet-50 in Mask R-CNN: binary bottleneck convolutions, full-precision
# stem / shortcuts / FPN / heads; BN trained and only the stem frozen, as in
# retinanet_r50-xnor_fpn_1x_coco.py (reasons there).
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        type='mmext.ResNet',
        frozen_stages=0,
        norm_eval=False,
        block_conv_cfg=dict(type='mmext.BinaryConv', mode='xnor')))
