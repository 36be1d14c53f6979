# CPU-sized iteration schedule for detectors and segmentors trained from scratch on the
# embedded data. A complete schedule on its own: the demo preset's RetinaNet run (560
# iterations, 56 of linear warm-up, then cosine decay to 1% of the lr). mmext.utils.embedded
# merges each preset's values over it (iterations, lr, validation interval) and fits the
# warm-up and the decay to the final train_cfg.max_iters (mmext.utils.embedded.fit_schedule),
# so that `--cfg-options train_cfg.max_iters=300` shortens both.
train_cfg = dict(type='IterBasedTrainLoop', max_iters=560, val_interval=280)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=56),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end=560, T_max=560,
         eta_min_ratio=0.01)
]
# From-scratch training without pretrained BN statistics is far more stable
# with AdamW than with the SGD recipe tuned for ImageNet-initialised backbones.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=10, norm_type=2))
auto_scale_lr = dict(enable=False)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=280, max_keep_ckpts=2))
log_processor = dict(type='LogProcessor', window_size=20, by_epoch=False)
# A fixed seed makes an embedded run repeatable (data order, augmentation and
# initialisation); the upstream configs leave it random.
randomness = dict(seed=0)
