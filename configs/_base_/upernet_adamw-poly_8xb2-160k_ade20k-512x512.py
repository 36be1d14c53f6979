# UperNet 160k ADE20K 512x512 with the AdamW + poly recipe of mmseg's transformer backbones
# (Swin's UperNet configs): AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01; 1500
# linear warm-up iterations from 1e-6 x lr, then poly (power 1) down to 0 at 160k; 8 GPUs x 2.
# The base of the UperNet configs of whole-network backbones: a design replaces the backbone
# (its init_cfg loads its weights, so the segmentor-level `pretrained` of the R-50 config is
# dropped), sets the heads' in_channels, adds its parameter groups (paramwise_cfg) and
# overrides only the values its official recipe changes.
_base_ = '../resnet/upernet_r50_4xb4-160k_ade20k-512x512.py'
model = dict(pretrained=None)
train_dataloader = dict(batch_size=2)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=1500, end=160000),
]
