# RetinaNet HorNet-S (7x7) FPN 1x COCO: the HorNet-T recipe of this folder with the drop path
# of the official HorNet-S detection config (0.6).
_base_ = './retinanet_hornet-tiny_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.6,
        init_cfg=dict(
            checkpoint='https://download.openmmlab.com/mmclassification/v0/hornet/'
            'hornet-small_3rdparty_in1k_20220915-5935f60f.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))
