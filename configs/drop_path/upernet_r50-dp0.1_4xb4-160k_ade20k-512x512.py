# Stochastic depth on ResNet-50 (v1c, mmext's host of the same network and
# weights): the residual branch of block i of the 16 bottlenecks is dropped per
# image with probability 0.1 * i / 15 in training (timm's linear rule). 0.1 is
# mmext's choice, not a published setting. The rest is mmseg's R-50 UperNet recipe.
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(backbone=dict(type='mmext.ResNetV1c', drop_path_rate=0.1))
