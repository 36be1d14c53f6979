# Label smoothing (eps = 0.1) on RetinaNet's sigmoid focal loss: every anchor's
# one-vs-all targets become y * 0.9 + 0.1 / 80 (timm's BinaryCrossEntropy rule;
# background anchors 0.1 / 80 on every class). The rest, gamma 2 and alpha 0.25
# included, is the R-50 RetinaNet recipe of configs/resnet.
_base_ = '../resnet/retinanet_r50_fpn_1x_coco.py'
model = dict(
    bbox_head=dict(loss_cls=dict(type='mmext.LabelSmoothingFocalLoss', label_smoothing=0.1)))
