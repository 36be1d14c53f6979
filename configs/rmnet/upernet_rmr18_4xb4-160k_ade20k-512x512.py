# RMResNet-18 (RMNet, reserve & merge) in UperNet, with the v1c deep stem of the
# baseline (the open-mmlab resnet18_v1c weights load unchanged). mmseg's
# ResNetV1c arguments that RMResNet does not take (contract_dilation) are dropped.
_base_ = '../resnet/upernet_r18_4xb4-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.RMResNet',
        depth=18,
        deep_stem=True,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        style='pytorch'))
