# UperNet FCViT-B24 160k ADE20K: the B12 recipe with the B24 backbone.
_base_ = './upernet_fcvit-b12_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        arch='b24',
        # https://drive.google.com/drive/folders/1II2v1rhNe9sgLJtoSR-cgSh2mpPQMt4t
        init_cfg=dict(checkpoint='checkpoints/fcvit_b24.pth.tar')))
