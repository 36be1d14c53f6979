# MutualNet (width x resolution mutual learning; Yang et al., ECCV 2020) on the MobileNetV2
# UperNet of configs/mobilenet_v2 (mmdet's MobileNetV2 made slimmable:
# mmext.SlimmableMobileNetV2, same weights). The students distil the decode head's
# per-pixel class distribution; the auxiliary head trains at the largest width only.
# - width range [0.7, 1.0], BN width list [0.7, 0.9, 1.0]: the catalog's / official
#   MobileNetV2 values; resolution_list: the official [224, 192, 160, 128] / 224,
#   applied to this config's crop (catalog);
# - the heads read the leading channels of the sliced stages (mmext.SlimmableUPerHead /
#   mmext.SlimmableFCNHead).
_base_ = '../mobilenet_v2/upernet_mobilenetv2_4xb4-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        type='mmext.SlimmableMobileNetV2',
        slimmable=dict(width_mult_list=[0.7, 0.9, 1.0], width_mult=1.0)),
    decode_head=dict(type='mmext.SlimmableUPerHead'),
    auxiliary_head=dict(type='mmext.SlimmableFCNHead'))
custom_hooks = [
    dict(type='mmext.MutualNetHook', width_mult_range=(0.7, 1.0),
         resolution_list=[1.0, 0.857, 0.714, 0.571])
]
