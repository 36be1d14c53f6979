# ResNet-50 + CBAM: channel then spatial attention after bn3, before the
# residual add, in every bottleneck.
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
model = dict(backbone=dict(plugins=[dict(cfg=dict(type='mmext.CBAM', ratio=16), position='after_conv3')]))
