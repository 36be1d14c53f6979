# ODConv-ResNet-50 (4x): every conv inside the bottlenecks (1x1, 3x3, 1x1)
# is ODConv with reduction 0.0625; the stem and the downsample path stay
# static convs, as in the paper. 4x (kernel_num=4) is the paper's Mask R-CNN setting.
_base_ = '../resnet/retinanet_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        type='mmext.ResNet',
        block_conv_cfg=dict(type='mmext.ODConv', kernel_num=4, reduction=0.0625)))
