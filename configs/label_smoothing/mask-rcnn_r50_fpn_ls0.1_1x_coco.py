# Label smoothing (eps = 0.1) on the box head's softmax classifier (80 classes +
# background): target 0.9 * onehot + 0.1 / 81. The RPN's objectness (a binary,
# class-agnostic score that ranks proposals) and the mask head's per-pixel
# binary loss are left unsmoothed. The rest is the R-50 Mask R-CNN recipe of
# configs/resnet.
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
model = dict(
    roi_head=dict(
        bbox_head=dict(
            loss_cls=dict(type='mmext.LabelSmoothingCrossEntropyLoss', label_smoothing=0.1))))
