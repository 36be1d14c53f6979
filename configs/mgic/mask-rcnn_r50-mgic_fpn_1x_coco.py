# ResNet-50 with every bottleneck replaced by a multigrid-in-channels block
# (mmext.MGBlock at the bottleneck's output width, 256..2048 channels; group
# size 32 and coarsening down to the first width below 32: the official
# driver's defaults). MGIC releases no ImageNet weights and no ResNet
# checkpoint fits these blocks (only the stem would load), so the backbone
# trains from scratch: no checkpoint, no frozen stage, BN statistics trained
# and synchronised across GPUs (frozen random weights or statistics would never
# learn). The rest is the R-50 Mask R-CNN recipe of configs/resnet.
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        type='mmext.ResNet',
        frozen_stages=-1,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        init_cfg=None,
        block_cfg=dict(type='mmext.MGBlock', group_size=32),
        block_cfg_blocks='all'))
