# Mask R-CNN MPViT-XS FPN 1x COCO: the MPViT-S recipe with drop path 0.1
# (official Detectron2 config mask_rcnn_mpvit_xs_1x.yaml).
_base_ = './mask-rcnn_mpvit-s_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        arch='xsmall',
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint='https://dl.dropbox.com/s/vvpq2m474g8tvyq/mpvit_xsmall.pth')),
    neck=dict(in_channels=[128, 192, 256, 256]))
