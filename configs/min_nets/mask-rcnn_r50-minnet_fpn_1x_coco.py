# Min-Net ResNet-50: the first block of each stage (the one that changes
# width and resolution) is a Min block (q = 2, 3x3 depth-wise branches), the
# placement of the official CIFAR Min-Net (CifarMinFP-LS). The other blocks
# load the ImageNet weights; the four Min blocks start from random weights,
# so only the stem stays frozen and the norms train with batch statistics
# (SyncBN: a fresh BN in eval mode would never learn its statistics).
# The rest is the R-50 Mask R-CNN recipe of configs/resnet.
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        type='mmext.ResNet',
        frozen_stages=0,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        block_cfg=dict(type='mmext.MinBlock', q=2),
        block_cfg_blocks='first'))
