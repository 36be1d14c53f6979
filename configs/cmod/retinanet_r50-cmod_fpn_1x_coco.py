# CMod stem (Leterme et al., arXiv 2212.00394) on RetinaNet R-50: 40 freely
# trained channels keep conv 7x7 s2 + BN + ReLU + max pool; 24 Gabor-like
# channels are dual-tree complex wavelet packets (fixed), mixed, subsampled,
# taken in modulus, energy-normalised. The torchvision weights load into every
# stage; the stem starts from its own init (docs/designs/cmod.md).
_base_ = '../resnet/retinanet_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(type='mmext.ResNet', stem_cfg=dict(type='mmext.CModStem', free_channels=40)))
