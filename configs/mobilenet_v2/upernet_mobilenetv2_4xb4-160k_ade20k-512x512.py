# UperNet with MobileNetV2, 160k ADE20K 512x512. The scope matters here: mmseg registers its own
# MobileNetV2 (dilated, out_indices over its seven layers, default (1, 2, 4, 6), no final 1x1
# to 1280), so an unscoped 'MobileNetV2' would build that one. 'mmdet.MobileNetV2' builds the
# same backbone as the detection configs of this folder: out_indices (1, 2, 4, 7) -> 24 / 32 /
# 96 / 1280 channels at strides 4 / 8 / 16 / 32. No published UperNet recipe with MobileNetV2
# was found: the ResNet-50 UperNet recipe of configs/resnet unchanged (SGD lr 0.01, poly, 4 GPUs
# x 4 images, SyncBN), with mmdet's ImageNet weights through the backbone's init_cfg (hence no
# segmentor-level `pretrained`, which names the R-50 checkpoint).
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmdet.MobileNetV2',
        widen_factor=1.0,
        out_indices=(1, 2, 4, 7),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://mmdet/mobilenet_v2')),
    decode_head=dict(in_channels=[24, 32, 96, 1280]),
    auxiliary_head=dict(in_channels=96))
