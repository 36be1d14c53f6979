# MutualNet (width x resolution mutual learning; Yang et al., ECCV 2020) on the MobileNetV2
# RetinaNet of configs/mobilenet_v2 (mmdet's MobileNetV2 made slimmable:
# mmext.SlimmableMobileNetV2, same weights).
# - width range [0.7, 1.0] and BN width list [0.7, 0.9, 1.0]: the catalog's / official
#   MobileNetV2 values (apps/mobilenet_v2.yml);
# - resolution_list: the official [224, 192, 160, 128] / 224, applied to this config's
#   image size (catalog);
# - norm_eval=False: mmext's choice, as in retinanet_r50-mutualnet_fpn_1x_coco.py (BNs
#   train on batch statistics, running statistics per width).
_base_ = '../mobilenet_v2/retinanet_mobilenetv2_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        type='mmext.SlimmableMobileNetV2',
        norm_eval=False,
        slimmable=dict(width_mult_list=[0.7, 0.9, 1.0], width_mult=1.0)),
    neck=dict(type='mmext.SlimmableFPN'))
custom_hooks = [
    dict(type='mmext.MutualNetHook', width_mult_range=(0.7, 1.0),
         resolution_list=[1.0, 0.857, 0.714, 0.571])
]
