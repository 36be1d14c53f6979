# ResNet-50 + CBAM: channel then spatial attention after bn3, before the
# residual add, in every bottleneck.
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
# mmseg's ResNetV1c passes no norm to plugins: the spatial BN follows the
# segmentor's SyncBN here (with CBAM's official momentum).
model = dict(backbone=dict(plugins=[dict(
    cfg=dict(type='mmext.CBAM', ratio=16,
             norm_cfg=dict(type='SyncBN', requires_grad=True, momentum=0.01)),
    position='after_conv3')]))
