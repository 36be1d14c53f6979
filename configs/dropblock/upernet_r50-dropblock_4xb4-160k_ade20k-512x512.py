# DropBlock (block 7) on the residual branch of the bottlenecks of stages 3 and
# 4 of ResNet-50 (v1c, mmext's host), after each of conv1, conv2 and conv3:
# drop_prob 0.1 (keep_prob 0.9) in stage 4 and a quarter of it in stage 3, the
# per-group rule of the TPU ResNet reference code; the skip connections, which
# the paper drops too, are not a plugin position. DropBlockScheduleHook raises
# drop_prob linearly from 0 over the whole training (the paper's schedule;
# mmdet's per-forward warm-up off). The rest is mmseg's R-50 UperNet recipe.
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        type='mmext.ResNetV1c',
        plugins=[
            dict(cfg=dict(type='mmext.DropBlock', drop_prob=p, block_size=7, warmup_iters=0),
                 position=position, stages=tuple(i == s for i in range(4)))
            for s, p in ((2, 0.025), (3, 0.1))
            for position in ('after_conv1', 'after_conv2', 'after_conv3')
        ]))
custom_hooks = [dict(type='mmext.DropBlockScheduleHook')]
