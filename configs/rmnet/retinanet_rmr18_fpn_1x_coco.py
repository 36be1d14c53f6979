# RMResNet-18 (RMNet, reserve & merge; Meng et al., arXiv 2111.00687) in RetinaNet:
# trains as the ResNet-18 baseline (same modules, torchvision weights); after
# training, backbone.deploy() turns every block into a plain conv-ReLU stack with
# the same outputs (docs/designs/rmnet.md). The paper targets basic-block ResNets.
_base_ = '../resnet/retinanet_r18_fpn_1x_coco.py'
model = dict(backbone=dict(type='mmext.RMResNet'))
