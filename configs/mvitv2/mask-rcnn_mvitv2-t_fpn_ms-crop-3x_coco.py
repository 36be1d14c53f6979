# Mask R-CNN MViTv2-T FPN 3x (36 epochs): the paper's COCO setting, after Detectron2
# projects/MViTv2 mask_rcnn_mvitv2_t_3x: the 1x config of this folder (the paper's optimizer,
# AMP, drop path 0.2) trained 3x as long with Detectron2's multi-scale + crop augmentation.
_base_ = './mask-rcnn_mvitv2-t_fpn_1x_coco.py'
# Detectron2's augmentation: half the images resized to 400-600 and cropped to
# 384-600 first; then a 480-800 shorter side (max 1333) and a flip.
scales = [(1333, 480), (1333, 512), (1333, 544), (1333, 576), (1333, 608), (1333, 640),
           (1333, 672), (1333, 704), (1333, 736), (1333, 768), (1333, 800)]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=scales, keep_ratio=True)],
            [
                dict(type='RandomChoiceResize', scales=[(1333, 400), (1333, 500), (1333, 600)],
                     keep_ratio=True),
                dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600),
                     allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=scales, keep_ratio=True),
            ],
        ]),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
train_cfg = dict(max_epochs=36)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    # Detectron2's steps at 52.5k / 62.5k of 67.5k iterations.
    dict(type='MultiStepLR', begin=0, end=36, by_epoch=True, milestones=[28, 33], gamma=0.1),
]
