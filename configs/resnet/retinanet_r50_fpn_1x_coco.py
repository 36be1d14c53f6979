# RetinaNet R-50 FPN 1x on COCO: the baseline every plugin / conv / backbone
# config is a delta of. Unchanged upstream recipe.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
