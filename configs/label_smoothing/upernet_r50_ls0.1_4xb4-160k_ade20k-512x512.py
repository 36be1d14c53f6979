# Label smoothing (eps = 0.1) on UperNet's decode and auxiliary cross-entropy:
# target 0.9 * onehot + 0.1 / 150 per pixel; ignored pixels (255) add 0, as in
# mmseg's loss. The loss weights (1.0, 0.4) and the rest are mmseg's R-50 UperNet
# recipe.
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(
    decode_head=dict(
        loss_decode=dict(type='mmext.LabelSmoothingCrossEntropyLoss', label_smoothing=0.1)),
    auxiliary_head=dict(
        loss_decode=dict(type='mmext.LabelSmoothingCrossEntropyLoss', label_smoothing=0.1)))
