# Mask R-CNN R-18 with 128-channel FPN, RPN, box and mask heads: the README
# demo's instance segmentation model, sized for a 2-core CPU. The full-width
# model is mask-rcnn_r18_fpn_1x_coco.py.
_base_ = './mask-rcnn_r18_fpn_1x_coco.py'
model = dict(
    neck=dict(out_channels=128),
    rpn_head=dict(in_channels=128, feat_channels=128),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=128),
        bbox_head=dict(in_channels=128, fc_out_channels=256),
        mask_roi_extractor=dict(out_channels=128),
        mask_head=dict(in_channels=128, conv_out_channels=128)))
