# Mask R-CNN HorNet-S (GF) FPN 1x COCO: the 7x7 recipe, global filters at the checkpoint's
# 14x8 / 7x4 as in the official detection configs (resampled to every input size at run time).
_base_ = './mask-rcnn_hornet-small_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        arch='small-gf',
        init_cfg=dict(
            checkpoint='https://download.openmmlab.com/mmclassification/v0/hornet/'
            'hornet-small-gf_3rdparty_in1k_20220915-649ca492.pth')))
