# ECA-Net50 as released: ECA after bn3 of every bottleneck, with the per-stage
# kernel sizes of the released weights (3, 5, 5, 7) rather than the adaptive
# rule (which would give 5, 5, 5, 7 at these widths), so official weights fit.
_base_ = '../resnet/mask-rcnn_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(plugins=[
        dict(cfg=dict(type='mmext.ECA', kernel_size=k), position='after_conv3',
             stages=tuple(i == s for i in range(4)))
        for s, k in enumerate((3, 5, 5, 7))
    ]))
