# Mask R-CNN FCViT-B24 FPN 1x COCO: the B12 recipe (official
# detection/configs/mask_rcnn_fcvit_b24_fpn_1x_coco.py uses the same optimizer).
_base_ = './mask-rcnn_fcvit-b12_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        arch='b24',
        # https://drive.google.com/drive/folders/1II2v1rhNe9sgLJtoSR-cgSh2mpPQMt4t
        init_cfg=dict(checkpoint='checkpoints/fcvit_b24.pth.tar')))
