# SDA-ResNet-50: selective depth attention over the blocks of each stage.
# SDA on the plain ResNet-50 stages; torchvision ResNet-50 weights load into
# every block, the attention starts from scratch.
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(
    pretrained='torchvision://resnet50',
    backbone=dict(
        _delete_=True,
        type='mmext.SDAResNet',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        style='pytorch'))
