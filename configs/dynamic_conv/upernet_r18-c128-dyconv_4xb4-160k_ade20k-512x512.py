# Dynamic convolution (K=4) for both 3x3 convs of every BasicBlock, temperature
# annealed 30 -> 1 over the first tenth of training.
# The embedded-data comparison model (docs); R-18 with the 128-channel decoder.
_base_ = '../resnet/upernet_r18-c128_4xb4-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        type='mmext.ResNetV1c',
        block_conv_cfg=dict(type='mmext.DynamicConv', num_kernels=4, reduction=4)))
custom_hooks = [dict(type='mmext.DynamicConvTemperatureHook', start=30.0, end=1.0,
                     num_steps=0.1)]
