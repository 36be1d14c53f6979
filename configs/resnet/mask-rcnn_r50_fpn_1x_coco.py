# Mask R-CNN R-50 FPN 1x on COCO: the two-stage baseline. Unchanged upstream recipe.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
