# MutualNet (width x resolution mutual learning; Yang et al., ECCV 2020) on the R-50 (v1c)
# UperNet of configs/resnet. The students distil the decode head's per-pixel class
# distribution (mmext.models.mutualnet.MutualNetDistiller); the auxiliary head trains at
# the largest width only.
# - width range [0.9, 1.0], BN width list [0.9, 1.0]: the catalog's / official ResNet-50
#   values; resolution_list: the official [224, 192, 160, 128] / 224, applied to this
#   config's crop (catalog);
# - the decode / auxiliary heads read the leading channels of the sliced stages
#   (mmext.SlimmableUPerHead / mmext.SlimmableFCNHead).
# The recipe (SyncBN, norm_eval False, SGD poly) is the baseline's; a slimmable host's
# BNs normalise per process (see mmext/models/layers/slimmable.py).
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        type='mmext.ResNetV1c',
        slimmable=dict(width_mult_list=[0.9, 1.0], width_mult=1.0)),
    decode_head=dict(type='mmext.SlimmableUPerHead'),
    auxiliary_head=dict(type='mmext.SlimmableFCNHead'))
custom_hooks = [
    dict(type='mmext.MutualNetHook', width_mult_range=(0.9, 1.0),
         resolution_list=[1.0, 0.857, 0.714, 0.571])
]
