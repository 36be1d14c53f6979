# CMod stem on ResNet-18 (v1c; replaces the deep stem) with the 128-channel
# decoder. The embedded-data comparison model (docs).
_base_ = '../resnet/upernet_r18-c128_4xb4-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(type='mmext.ResNetV1c',
                  stem_cfg=dict(type='mmext.CModStem', free_channels=40)))
