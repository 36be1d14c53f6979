"""PVTv2 (Wang et al., CVMJ 2022, https://arxiv.org/abs/2106.13797): what mmext
adds to MMDetection's ``PyramidVisionTransformerV2``.

The PVT and PVTv2 configs build mmdet's classes (``mmdet.PyramidVisionTransformer``,
``mmdet.PyramidVisionTransformerV2``); mmext has no model class for them. This
file holds the design's declarations instead, as an
:class:`~mmext.models.upstream.UpstreamDesign` (found by the tools without
registration; see :mod:`mmext.models.upstream`): its official checkpoint
layout (``python -m mmext convert PVTv2``) and its reference implementations
for ``benchmark.py --compare reference``.
"""
from mmext.models.official_layouts import OfficialLayout
from mmext.models.upstream import UpstreamDesign


def convert_pvtv2(state_dict):
    """PVTv2 (whai362/PVT) to MMDetection's ``PyramidVisionTransformerV2``,
    by mmdet's own ``pvt_convert`` (what its ``init_cfg`` Pretrained loading
    applies on the fly): ``patch_embed{i}``, ``block{i}.{j}`` (``attn.q`` and
    ``attn.kv`` joined into one input projection), ``norm{i}`` become
    ``layers.{i-1}.{0,1,2}``; ``head.*`` dropped.

    Args:
        state_dict (dict[str, Tensor]): Official weights (``module.``
            already removed).

    Returns:
        dict[str, Tensor]: mmdet's keys.
    """
    from mmdet.models.backbones.pvt import pvt_convert
    return dict(pvt_convert(state_dict))


def pvtv2_arch_key(backbone_cfg):
    """mmdet's PVTv2 has no ``arch``: a variant is its stage-1 width and its
    blocks per stage, ``(embed_dims, num_layers)`` with mmdet's defaults (64,
    (3, 4, 6, 3))."""
    return (backbone_cfg.get('embed_dims', 64),
            tuple(backbone_cfg.get('num_layers', (3, 4, 6, 3))))


PVTV2 = UpstreamDesign(
    name='PVTv2',
    upstream='mmdet.PyramidVisionTransformerV2',
    official_layouts=(OfficialLayout('PVTv2', convert_pvtv2,
                                     config='pvtv2/retinanet_pvtv2-b0_fpn_1x_coco.py'), ),
    # timm's PVTv2 (features_only) gives the same four stage outputs.
    reference_implementations={
        (32, (2, 2, 2, 2)): ('timm:pvt_v2_b0', ), (64, (2, 2, 2, 2)): ('timm:pvt_v2_b1', ),
        (64, (3, 4, 6, 3)): ('timm:pvt_v2_b2', ), (64, (3, 4, 18, 3)): ('timm:pvt_v2_b3', ),
        (64, (3, 8, 27, 3)): ('timm:pvt_v2_b4', ), (64, (3, 6, 40, 3)): ('timm:pvt_v2_b5', )},
    reference_arch_key=pvtv2_arch_key)
