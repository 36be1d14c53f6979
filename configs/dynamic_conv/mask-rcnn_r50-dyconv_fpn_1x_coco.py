# DY-ResNet-50: every conv inside the bottlenecks is a dynamic convolution
# (K=4 kernels, attention reduction 4); the softmax temperature is annealed
# from 30 to 1 over the first tenth of training, as the paper anneals it over
# the first 10 of 90 ImageNet epochs.
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        type='mmext.ResNet',
        block_conv_cfg=dict(type='mmext.DynamicConv', num_kernels=4, reduction=4)))
custom_hooks = [dict(type='mmext.DynamicConvTemperatureHook', start=30.0, end=1.0,
                     num_steps=0.1)]
