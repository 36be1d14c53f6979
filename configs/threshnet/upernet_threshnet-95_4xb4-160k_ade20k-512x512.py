# UperNet with ThreshNet-95, 160k ADE20K 512x512. No published segmentation recipe and no
# ImageNet weights exist for ThreshNet (the official repository trains CIFAR-10 only and
# releases no checkpoint): this is the ResNet-50 UperNet recipe of configs/resnet (mmseg's:
# SGD lr 0.01, momentum 0.9, weight decay 5e-4, poly, 4 GPUs x 4 images, SyncBN, BN trained)
# with the backbone trained from scratch (init_cfg None; no segmentor-level `pretrained`,
# which names the R-50 checkpoint).
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmext.ThreshNet',
        arch='95',
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        init_cfg=None),
    decode_head=dict(in_channels=[128, 256, 480, 960]),
    # The auxiliary FCN head reads stage 2 (in_index 2), the stride-16 map.
    auxiliary_head=dict(in_channels=480))
