# UperNet R-50 160k on ADE20K 512x512: the segmentation baseline. Unchanged upstream recipe.
_base_ = 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py'
