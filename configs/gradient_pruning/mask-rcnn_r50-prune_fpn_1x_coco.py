# Gradient-matrix pruning example (docs/designs/gradient_pruning.md): the R-50
# Mask R-CNN of configs/resnet, unchanged, plus the defaults
# tools/analysis_tools/prune.py reads when given this config and a checkpoint
# trained with it (the gradient rows come from the whole training loss: RPN,
# box and mask heads). mmext's choices, as in the RetinaNet example.
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
pruning = dict(threshold=0.01, calib_batches=16, ratio=1.0, finetune_iters=0)
