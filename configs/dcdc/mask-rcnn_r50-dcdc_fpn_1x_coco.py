# ResNet-50 with dual complementary dynamic convolution (DCDC) in place of
# the 3x3 conv of every bottleneck (the dcn slot); 1x1 convs, stem and
# downsample stay static.
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(dcn=dict(type='mmext.DCDC'), stage_with_dcn=(True, True, True, True)))
