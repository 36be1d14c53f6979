# Mask R-CNN FCViT-B12 FPN 1x COCO, the recipe of the official
# detection/configs/mask_rcnn_fcvit_b12_fpn_1x_coco.py (ma-xu/FCViT): AdamW 2e-4, wd 1e-4 on
# every parameter, fp16, 8 GPUs x 4 images, mmdet 1x schedule, no drop path.
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.FCViT',
        arch='b12',
        drop_path_rate=0.,
        out_indices=(0, 1, 2, 3),
        # fcvit_b12 ImageNet weights, released only as a Google Drive folder
        # (https://drive.google.com/drive/folders/1QuyalIGhJeD2pxcVxR0_gJNrk2mZ8WEb):
        # download the file there; the official layout is converted on load.
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/fcvit_b12.pth.tar')),
    neck=dict(in_channels=[64, 128, 320, 512]))
train_dataloader = dict(batch_size=4)
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=1e-4))
auto_scale_lr = dict(enable=False, base_batch_size=32)
