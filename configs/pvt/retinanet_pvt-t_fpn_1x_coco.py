# RetinaNet PVT-Tiny FPN 1x: MMDetection's own PyramidVisionTransformer
# (not reimplemented); recipe of mmdet configs/pvt (AdamW lr 1e-4, wd 1e-4).
# 'corner' padding of the patch embeddings: ceil(H/s) maps at any input size.
_base_ = '../resnet/retinanet_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmdet.PyramidVisionTransformer',
        embed_dims=64,
        num_layers=[2, 2, 2, 2],
        paddings=['corner', 'corner', 'corner', 'corner'],
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://github.com/whai362/PVT/releases/download/v2/pvt_tiny.pth')),
    neck=dict(in_channels=[64, 128, 320, 512]))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-4))
