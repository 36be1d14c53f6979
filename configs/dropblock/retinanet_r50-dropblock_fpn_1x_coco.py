# DropBlock (block 7) on the residual branch of the bottlenecks of stages 3 and
# 4, after each of conv1, conv2 and conv3: drop_prob 0.1 (keep_prob 0.9) in
# stage 4 and a quarter of it in stage 3, the per-group rule of the TPU ResNet
# reference code; the skip connections, which the paper drops too, are not a
# plugin position. DropBlockScheduleHook raises drop_prob linearly from 0 over
# the whole training (the paper's schedule; mmdet's per-forward warm-up off).
# mmext.ResNet: mmdet's blocks refuse two plugins of one type in a block.
# The rest is the R-50 RetinaNet recipe of configs/resnet.
_base_ = '../resnet/retinanet_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        type='mmext.ResNet',
        plugins=[
            dict(cfg=dict(type='mmext.DropBlock', drop_prob=p, block_size=7, warmup_iters=0),
                 position=position, stages=tuple(i == s for i in range(4)))
            for s, p in ((2, 0.025), (3, 0.1))
            for position in ('after_conv1', 'after_conv2', 'after_conv3')
        ]))
custom_hooks = [dict(type='mmext.DropBlockScheduleHook')]
