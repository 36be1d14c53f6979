# RetinaNet FCViT-B12 FPN 1x COCO. The paper has no RetinaNet result; this is its
# Mask R-CNN recipe (official detection configs: AdamW 2e-4, wd 1e-4, fp16, 8 GPUs x 4).
# The FPN reads stages 1-3 (C3-C5), so the backbone builds no stage-0 output norm.
_base_ = '../resnet/retinanet_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.FCViT',
        arch='b12',
        drop_path_rate=0.,
        out_indices=(1, 2, 3),
        # https://drive.google.com/drive/folders/1QuyalIGhJeD2pxcVxR0_gJNrk2mZ8WEb
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/fcvit_b12.pth.tar')),
    neck=dict(in_channels=[128, 320, 512], start_level=0))
train_dataloader = dict(batch_size=4)
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=1e-4))
auto_scale_lr = dict(enable=False, base_batch_size=32)
