# RMResNet-18 (RMNet, reserve & merge) in Mask R-CNN: the ResNet-18 baseline,
# whose backbone deploy() turns into a plain conv-ReLU network after training.
_base_ = '../resnet/mask-rcnn_r18_fpn_1x_coco.py'
model = dict(backbone=dict(type='mmext.RMResNet'))
