# ResNet-50 + CBAM: channel then spatial attention after bn3, before the
# residual add, in every bottleneck.
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(backbone=dict(plugins=[dict(cfg=dict(type='mmext.CBAM', ratio=16), position='after_conv3')]))
