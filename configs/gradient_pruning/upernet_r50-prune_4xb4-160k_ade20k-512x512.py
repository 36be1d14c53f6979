# Gradient-matrix pruning example (docs/designs/gradient_pruning.md): mmseg's
# R-50 UperNet of configs/resnet (ResNetV1c; exported as mmext.ResNetV1c with
# mid_channels), unchanged, plus the defaults tools/analysis_tools/prune.py reads
# when given this config and a checkpoint trained with it (the gradient rows
# come from the decode and auxiliary losses). mmext's choices, as in the
# RetinaNet example.
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
pruning = dict(threshold=0.01, calib_batches=16, ratio=1.0, finetune_iters=0)
