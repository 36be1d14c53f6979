# UperNet HorNet-T (7x7) 160k ADE20K 512x512 (published 48.1 mIoU). Recipe of the official
# semantic_segmentation/configs/hornet/upernet_hornet_tiny_7x7_512_160k_ade20k.py: drop path 0.4,
# AdamW 1e-4 / wd 0.05, no decay on 1-D params, 1500-iter linear warmup, poly; 8 GPUs x 2.
_base_ = '../_base_/upernet_adamw-poly_8xb2-160k_ade20k-512x512.py'
crop_size = (512, 512)
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.HorNet',
        arch='tiny',
        drop_path_rate=0.4,
        out_indices=(0, 1, 2, 3),
        # The official ImageNet-1k weights as re-hosted by mmpretrain (see docs/designs/hornet.md).
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://download.openmmlab.com/mmclassification/v0/hornet/'
            'hornet-tiny_3rdparty_in1k_20220915-0e8eedff.pth')),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))
# The official stage-wise lr decay (0.9) has no by-name equivalent for HorNet here (mmseg's
# LearningRateDecayOptimizerConstructor only accepts ConvNeXt / BEiT / MAE): plain AdamW.
optim_wrapper = dict(
    optimizer=dict(lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        bias_decay_mult=0.,
        custom_keys={'gamma1': dict(decay_mult=0.), 'gamma2': dict(decay_mult=0.)}))
