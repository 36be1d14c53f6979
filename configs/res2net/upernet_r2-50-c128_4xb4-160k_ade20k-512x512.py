# Res2Net-50 (26w x 4s) with the 128-channel decoder: the embedded-data comparison
# model against configs/resnet/upernet_r50-c128_4xb4-160k_ade20k-512x512.py
# (mmdet's Res2Net starts at depth 50, so there is no R-18 variant).
_base_ = './upernet_r2-50_4xb4-160k_ade20k-512x512.py'
model = dict(decode_head=dict(channels=128), auxiliary_head=dict(channels=64))
