# CPU-sized iteration schedule for detectors and segmentors trained from scratch on the
# embedded data. 'max_iters' and 'warmup_iters' are placeholders that
# mmext.utils.embedded fills from the preset (demo / smoke) so one schedule
# serves both.
train_cfg = dict(type='IterBasedTrainLoop', max_iters='max_iters', val_interval=500)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end='warmup_iters'),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end='max_iters', T_max='max_iters',
         eta_min_ratio=0.01)
]
# From-scratch training without pretrained BN statistics is far more stable
# with AdamW than with the SGD recipe tuned for ImageNet-initialised backbones.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=10, norm_type=2))
auto_scale_lr = dict(enable=False)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=500, max_keep_ckpts=2))
log_processor = dict(type='LogProcessor', window_size=20, by_epoch=False)
# A fixed seed makes an embedded run repeatable (data order, augmentation and
# initialisation); the upstream configs leave it random.
randomness = dict(seed=0)
