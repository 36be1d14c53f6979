# RetinaNet MPViT-T FPN 1x COCO: the MPViT-S recipe with drop path 0.1
# (official Detectron2 config retinanet_mpvit_tiny_1x.yaml).
_base_ = './retinanet_mpvit-s_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        arch='tiny',
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint='https://dl.dropbox.com/s/1cmquqyjmaeeg1n/mpvit_tiny.pth')),
    neck=dict(in_channels=[96, 176, 216, 216]))
