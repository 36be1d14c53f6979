# SKNet-50: ResNeXt-50 (32x4d) whose grouped 3x3 is the selective-kernel unit
# (3x3 and dilated 3x3 branches, G=32 from the host's groups, r=16, L=32).
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(
    pretrained='open-mmlab://resnext50_32x4d',
    backbone=dict(
        type='mmseg.ResNeXt',
        groups=32,
        base_width=4,
        # The unit's own BNs follow the segmentor's SyncBN.
        dcn=dict(type='mmext.SKConv', norm_cfg=dict(type='SyncBN', requires_grad=True)),
        stage_with_dcn=(True, True, True, True)))
