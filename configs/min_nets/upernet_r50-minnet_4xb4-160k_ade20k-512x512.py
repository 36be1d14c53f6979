# Min-Net ResNet-50 (v1c): the first block of each stage is a Min block
# (q = 2, 3x3 depth-wise branches; official CifarMinFP-LS placement), taking
# the segmentor's SyncBN. The other blocks load the R-50 v1c weights, the Min
# blocks start from random weights. The rest is mmseg's R-50 UperNet recipe.
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        type='mmext.ResNetV1c',
        block_cfg=dict(type='mmext.MinBlock', q=2),
        block_cfg_blocks='first'))
