# SE-ResNet-50: squeeze-and-excitation (r=16) on the residual branch, after
# bn3 and before the identity add, in every bottleneck.
_base_ = '../resnet/retinanet_r50_fpn_1x_coco.py'
model = dict(backbone=dict(plugins=[dict(cfg=dict(type='mmext.SE', ratio=16), position='after_conv3')]))
