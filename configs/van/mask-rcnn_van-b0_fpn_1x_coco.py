# Mask R-CNN with VAN-B0, 1x COCO. The VAN paper (Sec. 4.2) follows PVT(v2)'s
# recipe; no official VAN detection configs were found, so PVTv2's values are used:
# AdamW lr 1e-4, weight decay 1e-4, batch 16 (8x2), ImageNet-1k weights, drop path 0.1.
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.VAN',
        arch='b0',
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        # Official classification weights (converted on load).
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/Visual-Attention-Network/VAN-Tiny-original/'
            'resolve/main/van_tiny_754.pth.tar')),
    neck=dict(in_channels=[32, 64, 160, 256]))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001))
