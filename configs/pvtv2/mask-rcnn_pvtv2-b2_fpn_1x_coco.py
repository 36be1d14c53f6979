# Mask R-CNN PVTv2-B2 FPN 1x: the PVTv2-B0 recipe of this folder with the
# B2 backbone (MMDetection has RetinaNet PVTv2 configs only).
_base_ = './mask-rcnn_pvtv2-b0_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        embed_dims=64,
        num_layers=[3, 4, 6, 3],
        init_cfg=dict(
            checkpoint='https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b2.pth')),
    neck=dict(in_channels=[64, 128, 320, 512]))
