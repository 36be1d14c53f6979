# UperNet FCViT-B12 160k ADE20K. The paper segments with Semantic FPN (official
# segmentation/configs/sem_fpn: AdamW 2e-4 for 32 images, wd 1e-4, poly 0.9); this keeps
# that optimizer at 16 images (lr 1e-4), with mmseg's 1500-iteration linear warmup.
_base_ = '../_base_/upernet_adamw-poly_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.FCViT',
        arch='b12',
        drop_path_rate=0.,
        out_indices=(0, 1, 2, 3),
        # https://drive.google.com/drive/folders/1QuyalIGhJeD2pxcVxR0_gJNrk2mZ8WEb
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/fcvit_b12.pth.tar')),
    decode_head=dict(in_channels=[64, 128, 320, 512]),
    auxiliary_head=dict(in_channels=320))
optim_wrapper = dict(optimizer=dict(lr=1e-4, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=0.9, by_epoch=False, begin=1500, end=160000),
]
