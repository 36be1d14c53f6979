# Dendritic ResNet-50 (v1c): every bottleneck conv is a DendriticConv (one ReLU
# with its own bias per connection); stem and downsample stay plain. The R-50
# v1c weights load and start as the plain network (zero dendritic biases).
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(type='mmext.ResNetV1c', block_conv_cfg=dict(type='mmext.DendriticConv')))
