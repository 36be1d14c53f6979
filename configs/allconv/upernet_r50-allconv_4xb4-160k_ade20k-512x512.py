# All-convolutional stem (Springenberg et al., arXiv 1412.6806) on UperNet R-50
# (v1c deep stem): a 3x3 stride-2 conv + SyncBN + ReLU instead of the max pool.
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(backbone=dict(type='mmext.ResNetV1c', stem_pool='conv'))
