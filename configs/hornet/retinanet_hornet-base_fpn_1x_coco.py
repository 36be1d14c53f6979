# RetinaNet HorNet-B (7x7) FPN 1x COCO: the HorNet-T recipe of this folder with the drop path
# of the official HorNet-B detection config (0.7).
_base_ = './retinanet_hornet-tiny_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.7,
        init_cfg=dict(
            checkpoint='https://download.openmmlab.com/mmclassification/v0/hornet/'
            'hornet-base_3rdparty_in1k_20220915-a06176bb.pth')),
    neck=dict(in_channels=[128, 256, 512, 1024]))
