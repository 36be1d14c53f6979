# UperNet with DenseNet-121 and the 128-channel decoder (64 in the auxiliary head): the
# embedded-data comparison model against configs/resnet/upernet_r18-c128_4xb4-160k_ade20k-512x512.py
# and the other designs' c128 configs.
_base_ = './upernet_densenet-121_4xb4-160k_ade20k-512x512.py'
model = dict(decode_head=dict(channels=128), auxiliary_head=dict(channels=64))
