# QNN ResNet-50, 1-bit weights / 2-bit activations (the paper's AlexNet setting):
# every convolution inside the bottlenecks is a QuantConv (input BN -> 2-bit
# quantiser -> conv with sign(W)); the stem, the downsample shortcuts, FPN and
# the heads stay full precision. Starts from the full-precision ImageNet weights;
# every BN trains and only the stem is frozen, as for XNOR-Net
# (configs/xnor_net/retinanet_r50-xnor_fpn_1x_coco.py).
_base_ = '../resnet/retinanet_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        type='mmext.ResNet',
        frozen_stages=0,
        norm_eval=False,
        block_conv_cfg=dict(type='mmext.QuantConv', weight_bits=1, activation_bits=2)))
