# All-convolutional stem (Springenberg et al., arXiv 1412.6806) on RetinaNet R-50:
# the stem's 3x3 stride-2 max pool becomes a 3x3 stride-2 conv + BN + ReLU
# (64 -> 64 channels). The torchvision weights load into everything else; the
# new conv starts from its Kaiming init (docs/designs/all_convolutional.md).
_base_ = '../resnet/retinanet_r50_fpn_1x_coco.py'
model = dict(backbone=dict(type='mmext.ResNet', stem_pool='conv'))
