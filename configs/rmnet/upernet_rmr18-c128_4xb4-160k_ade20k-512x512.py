# RMResNet-18 (v1c deep stem) with the 128-channel decoder (64 in the auxiliary
# head): the embedded-data comparison model (docs).
_base_ = './upernet_rmr18_4xb4-160k_ade20k-512x512.py'
model = dict(decode_head=dict(channels=128), auxiliary_head=dict(channels=64))
