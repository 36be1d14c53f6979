# RetinaNet with the small ResNet-18: the README demo model (fits a 2-core CPU).
_base_ = 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'
