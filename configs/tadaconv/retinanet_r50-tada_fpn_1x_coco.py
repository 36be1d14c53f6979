# ResNet-50 with TAdaConv in its T=1 image form (per-sample calibration of
# the 3x3 kernel) in place of the 3x3 conv of every bottleneck, where
# TAda2D puts it in the video network.
_base_ = '../resnet/retinanet_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(dcn=dict(type='mmext.TAdaConv'), stage_with_dcn=(True, True, True, True)))
