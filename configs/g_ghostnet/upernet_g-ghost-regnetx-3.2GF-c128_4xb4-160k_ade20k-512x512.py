# UperNet with G-Ghost RegNetX-3.2GF and the 128-channel decoder (64 in the auxiliary head):
# the embedded-data comparison model against the c128 configs of configs/resnet
# (upernet_r18-c128_..., upernet_r50-c128_...) and of the other designs.
_base_ = './upernet_g-ghost-regnetx-3.2GF_4xb4-160k_ade20k-512x512.py'
model = dict(decode_head=dict(channels=128), auxiliary_head=dict(channels=64))
