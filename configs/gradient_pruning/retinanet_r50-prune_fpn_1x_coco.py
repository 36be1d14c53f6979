# Gradient-matrix pruning example (docs/designs/gradient_pruning.md): the R-50
# RetinaNet of configs/resnet, unchanged, plus the defaults
# tools/analysis_tools/prune.py reads when given this config and a checkpoint
# trained with it. The values are mmext's choices (the paper's are not public):
# tau = 0.01, 16 calibration batches (at COCO scale every R-50 layer gets far
# more output positions than filters), the whole estimated redundancy of every
# layer (ratio 1), no fine-tune inside the tool (train the exported config with
# tools/train.py: its load_from is the pruned checkpoint).
_base_ = '../resnet/retinanet_r50_fpn_1x_coco.py'
pruning = dict(threshold=0.01, calib_batches=16, ratio=1.0, finetune_iters=0)
