# UperNet with ResNet-18 (v1c): the README demo's semantic segmentation model.
_base_ = 'mmseg::upernet/upernet_r18_4xb4-160k_ade20k-512x512.py'
