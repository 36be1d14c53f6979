# CMod stem (Leterme et al., arXiv 2212.00394) on Mask R-CNN R-50: 40 free
# channels (conv 7x7 s2 + BN + ReLU + max pool) and 24 complex-wavelet modulus
# channels (docs/designs/cmod.md).
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(type='mmext.ResNet', stem_cfg=dict(type='mmext.CModStem', free_channels=40)))
