# ResNet-50 with dual complementary dynamic convolution (DCDC) in place of
# the 3x3 conv of every bottleneck (the dcn slot); 1x1 convs, stem and
# downsample stay static.
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        # The kernel generator's BN follows the segmentor's SyncBN.
        dcn=dict(type='mmext.DCDC', norm_cfg=dict(type='SyncBN', requires_grad=True)),
        stage_with_dcn=(True, True, True, True)))
