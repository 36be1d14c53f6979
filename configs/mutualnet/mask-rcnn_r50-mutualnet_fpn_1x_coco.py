# MutualNet (width x resolution mutual learning; Yang et al., ECCV 2020) on the R-50
# Mask R-CNN of configs/resnet: the RetinaNet config's choices
# (retinanet_r50-mutualnet_fpn_1x_coco.py). The students distil the RPN (classification
# and boxes) and the box head's classification on the teacher's RoIs
# (mmext.models.mutualnet.MutualNetDistiller); masks are trained at the largest width only.
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
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
