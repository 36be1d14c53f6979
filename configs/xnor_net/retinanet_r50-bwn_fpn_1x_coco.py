# BWN ResNet-50: the XNOR sibling with full-precision inputs (binary weights
# sign(W) * mean|W| only; no input BN).
_base_ = './retinanet_r50-xnor_fpn_1x_coco.py'
model = dict(backbone=dict(block_conv_cfg=dict(mode='bwn')))
