# Selective-kernel units as both 3x3 convs of every BasicBlock. ResNet-18 has no
# grouped width to put SKNet's G=32 on (32 groups of 2 channels would cut the
# backbone to 1.3M parameters), so the branches are full 3x3 convs (groups=1):
# twice the 3x3 parameters of the baseline, see the cost table in the docs.
# The embedded-data comparison model (docs); R-18 with the 128-channel decoder.
_base_ = '../resnet/upernet_r18-c128_4xb4-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        type='mmext.ResNetV1c',
        dcn=dict(type='mmext.SKConv'),
        stage_with_dcn=(True, True, True, True)))
