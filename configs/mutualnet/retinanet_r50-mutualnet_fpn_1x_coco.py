# MutualNet (width x resolution mutual learning; Yang et al., ECCV 2020) on the R-50
# RetinaNet of configs/resnet. One network trained at widths 0.9-1.0 and input scales
# 1.0-0.571; it evaluates at backbone.slimmable.width_mult (1.0 here; e.g.
# --cfg-options model.backbone.slimmable.width_mult=0.9), and
# tools/analysis_tools/mutualnet_eval.py evaluates a grid of widths x resolutions.
# - width range [0.9, 1.0] and BN width list [0.9, 1.0]: the catalog's / official
#   ResNet-50 values (apps/resnet50.yml);
# - resolution_list: the official [224, 192, 160, 128] as fractions of 224, applied to
#   this config's image size (catalog);
# - norm_eval=False: mmext's choice. MutualNet's BNs train on batch statistics and keep
#   running statistics per width; frozen (eval-mode) BNs would need statistics for every
#   random width. frozen_stages stays as in the baseline.
# - the FPN reads the leading channels of the sliced stages (mmext.SlimmableFPN).
_base_ = '../resnet/retinanet_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        type='mmext.ResNet',
        norm_eval=False,
        slimmable=dict(width_mult_list=[0.9, 1.0], width_mult=1.0)),
    neck=dict(type='mmext.SlimmableFPN'))
custom_hooks = [
    dict(type='mmext.MutualNetHook', width_mult_range=(0.9, 1.0),
         resolution_list=[1.0, 0.857, 0.714, 0.571])
]
