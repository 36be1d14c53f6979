# RetinaNet HorNet-T (GF) FPN 1x COCO: the 7x7 recipe, global filters at the checkpoint's
# 14x8 / 7x4 as in the official detection configs (resampled to every input size at run time).
_base_ = './retinanet_hornet-tiny_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        arch='tiny-gf',
        init_cfg=dict(
            checkpoint='https://download.openmmlab.com/mmclassification/v0/hornet/'
            'hornet-tiny-gf_3rdparty_in1k_20220915-4c35a66b.pth')))
