# UperNet R-18 with 128-channel PPM/FPN decoder (64 in the auxiliary head): the
# README demo's semantic segmentation model, sized for a 2-core CPU. The
# full-width model is upernet_r18_4xb4-160k_ade20k-512x512.py.
_base_ = './upernet_r18_4xb4-160k_ade20k-512x512.py'
model = dict(decode_head=dict(channels=128), auxiliary_head=dict(channels=64))
