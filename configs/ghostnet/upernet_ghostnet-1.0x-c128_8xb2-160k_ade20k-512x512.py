# GhostNet 1.0x with the 128-channel decoder (64 in the auxiliary head): the embedded-data
# comparison model against configs/resnet/upernet_r18-c128_4xb4-160k_ade20k-512x512.py.
_base_ = './upernet_ghostnet-1.0x_8xb2-160k_ade20k-512x512.py'
model = dict(decode_head=dict(channels=128), auxiliary_head=dict(channels=64))
