# CMod stem (Leterme et al., arXiv 2212.00394) on UperNet R-50 (v1c): the CMod
# stem replaces the whole deep stem (three 3x3 convs and the max pool); its
# free channels follow the segmentor's SyncBN and its energy norm sums across
# ranks (docs/designs/cmod.md).
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(type='mmext.ResNetV1c',
                  stem_cfg=dict(type='mmext.CModStem', free_channels=40)))
