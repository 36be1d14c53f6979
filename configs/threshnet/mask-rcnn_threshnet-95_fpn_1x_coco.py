# Mask R-CNN with ThreshNet-95, 1x COCO. No published detection recipe and no ImageNet
# weights exist for ThreshNet (the official repository trains CIFAR-10 only and releases no
# checkpoint): this is the ResNet-50 Mask R-CNN recipe of configs/resnet (SGD lr 0.02,
# momentum 0.9, weight decay 1e-4, 8 GPUs x 2 images, 12 epochs) with the backbone trained
# from scratch: its own initialisation (init_cfg None), no frozen stage, BN statistics
# trained and synchronised across GPUs.
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.ThreshNet',
        arch='95',
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=[128, 256, 480, 960]))
