# UperNet with DenseNet-121, 160k ADE20K 512x512. No published segmentation recipe for DenseNet
# was found: this is the ResNet-50 UperNet recipe of configs/resnet unchanged (mmseg's: SGD lr
# 0.01, momentum 0.9, weight decay 5e-4, poly, 4 GPUs x 4 images, SyncBN, BN trained), with
# torchvision's ImageNet weights through the backbone's init_cfg (hence no segmentor-level
# `pretrained`, which names the R-50 checkpoint).
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmext.DenseNet',
        arch='121',
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://download.pytorch.org/models/densenet121-a639ec97.pth')),
    decode_head=dict(in_channels=[256, 512, 1024, 1024]),
    auxiliary_head=dict(in_channels=1024))
