# All-convolutional stem (Springenberg et al., arXiv 1412.6806) on Mask R-CNN R-50:
# a 3x3 stride-2 conv + BN + ReLU instead of the stem's max pool.
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
model = dict(backbone=dict(type='mmext.ResNet', stem_pool='conv'))
