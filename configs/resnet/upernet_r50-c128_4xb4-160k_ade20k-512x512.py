# UperNet R-50 (v1c) with the 128-channel PPM/FPN decoder (64 in the auxiliary head)
# of the R-18 demo model: the embedded-data reference for R-50-sized backbones.
_base_ = './upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(decode_head=dict(channels=128), auxiliary_head=dict(channels=64))
