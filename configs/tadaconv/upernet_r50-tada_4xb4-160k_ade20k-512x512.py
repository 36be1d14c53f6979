# ResNet-50 with TAdaConv in its T=1 image form (per-sample calibration of
# the 3x3 kernel) in place of the 3x3 conv of every bottleneck, where
# TAda2D puts it in the video network.
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        # mmseg's ResNetV1c passes no norm to the unit: the route's BN follows
        # the segmentor's SyncBN here.
        dcn=dict(type='mmext.TAdaConv', route_norm_cfg=dict(type='SyncBN', requires_grad=True)),
        stage_with_dcn=(True, True, True, True)))
