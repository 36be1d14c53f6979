"""MobileNetV2 (Sandler et al., CVPR 2018, https://arxiv.org/abs/1801.04381):
what mmext adds to MMDetection's ``MobileNetV2``.

The configs of ``configs/mobilenet_v2/`` build mmdet's class
(``mmdet.MobileNetV2``, also from MMSegmentation configs, whose registry has a
different ``MobileNetV2`` of its own); mmext has no model class for it. This
file holds the design's declarations instead, as an
:class:`~mmext.models.upstream.UpstreamDesign` (see
:mod:`mmext.models.upstream`): torchvision's checkpoint layout
(``python -m mmext convert MobileNetV2 SRC DST --config CONFIG``) and the
reference implementations of ``benchmark.py --compare reference``.

The one model class here is :class:`SlimmableMobileNetV2`, mmdet's class with
MutualNet's width slicing (``mmext.SlimmableMobileNetV2``).
"""
import re

from mmdet.models.backbones import MobileNetV2 as _MobileNetV2

from mmext.models.layers.slimmable import make_slimmable
from mmext.models.official_layouts import OfficialLayout
from mmext.models.upstream import UpstreamDesign
from mmext.registry import MODELS

#: Inverted-residual blocks per mmdet layer (``layer1`` .. ``layer7``), the
#: ``n`` column of the paper's Table 2; torchvision numbers the same blocks
#: ``features.1`` .. ``features.17`` in this order.
BLOCKS_PER_LAYER = (1, 2, 3, 4, 3, 3, 1)
#: torchvision ``features.{i}`` -> mmdet ``layer{l}.{j}`` for i = 1 .. 17.
TORCHVISION_BLOCKS = {
    i + 1: f'layer{layer + 1}.{j}'
    for i, (layer, j) in enumerate((layer, j) for layer, n in enumerate(BLOCKS_PER_LAYER)
                                   for j in range(n))}
_BLOCK_KEY = re.compile(r'^features\.(\d+)\.(.+)$')
# Inside a block: torchvision's Sequential indices -> mmdet's ConvModules.
# Expansion 1 (features.1): depth-wise conv + BN + ReLU6, 1x1, BN.
_PARTS_T1 = {'conv.0.0.': 'depthwise_conv.conv.', 'conv.0.1.': 'depthwise_conv.bn.',
             'conv.1.': 'linear_conv.conv.', 'conv.2.': 'linear_conv.bn.'}
# Expansion 6: 1x1 + BN + ReLU6, depth-wise + BN + ReLU6, 1x1, BN.
_PARTS_T6 = {'conv.0.0.': 'expand_conv.conv.', 'conv.0.1.': 'expand_conv.bn.',
             'conv.1.0.': 'depthwise_conv.conv.', 'conv.1.1.': 'depthwise_conv.bn.',
             'conv.2.': 'linear_conv.conv.', 'conv.3.': 'linear_conv.bn.'}
_LAST = len(TORCHVISION_BLOCKS) + 1  # features.18: the 1x1 conv to 1280


def convert_torchvision_mobilenet_v2(state_dict):
    """torchvision's ``mobilenet_v2`` (``features.*``, ``classifier.*``) to
    MMDetection's ``MobileNetV2`` keys.

    ``features.0.{0,1}`` (stem conv, BN) -> ``conv1.{conv,bn}``;
    ``features.{i}`` (i = 1 .. 17) -> ``layer{l}.{j}`` by
    :data:`TORCHVISION_BLOCKS`, with ``conv.*`` -> ``expand_conv`` /
    ``depthwise_conv`` / ``linear_conv`` (``.conv`` / ``.bn``);
    ``features.18.{0,1}`` -> ``conv2.{conv,bn}``; ``classifier.*`` dropped.
    The layout is the same at every ``width_mult`` / ``widen_factor`` (only
    the tensor shapes change). Keys outside torchvision's layout are kept as
    they are (the converter's check then names them).

    Args:
        state_dict (dict[str, Tensor]): torchvision weights (``module.``
            already removed).

    Returns:
        dict[str, Tensor]: mmdet's keys.
    """
    out = {}
    for key, value in state_dict.items():
        if key.startswith('classifier.'):
            continue
        match = _BLOCK_KEY.match(key)
        if not match:
            out[key] = value
            continue
        index, rest = int(match.group(1)), match.group(2)
        if index in (0, _LAST):
            name = 'conv1' if index == 0 else 'conv2'
            new = re.sub(r'^0\.', f'{name}.conv.', rest)
            new = re.sub(r'^1\.', f'{name}.bn.', new)
        else:
            parts = _PARTS_T1 if index == 1 else _PARTS_T6
            prefix = next((p for p in parts if rest.startswith(p)), None)
            new = key if prefix is None else \
                f'{TORCHVISION_BLOCKS[index]}.{parts[prefix]}{rest[len(prefix):]}'
        out[new] = value
    return out


MOBILENET_V2 = UpstreamDesign(
    name='MobileNetV2',
    upstream='mmdet.MobileNetV2',
    official_layouts=(OfficialLayout(
        'MobileNetV2', convert_torchvision_mobilenet_v2,
        config='mobilenet_v2/retinanet_mobilenetv2_fpn_1x_coco.py'), ),
    # timm's MobileNetV2 (features_only: strides 2..32, the last tap the
    # 320-channel block output, so timm skips mmdet's final 1x1 to 1280).
    reference_implementations={0.5: ('timm:mobilenetv2_050', ),
                               1.0: ('timm:mobilenetv2_100', ),
                               1.4: ('timm:mobilenetv2_140', )},
    # mmdet's MobileNetV2 has no arch: a variant is its width multiplier.
    reference_arch_key=lambda backbone_cfg: float(backbone_cfg.get('widen_factor', 1.0)))


@MODELS.register_module()
class SlimmableMobileNetV2(_MobileNetV2):
    """mmdet's ``MobileNetV2`` run at any width multiplier of
    ``slimmable['width_mult_list']``'s range (MutualNet / US-Net slicing,
    :mod:`mmext.models.layers.slimmable`).

    Every argument of mmdet's class (same modules, state dict and
    initialisation: an ``mmdet.MobileNetV2`` checkpoint loads) plus
    keyword-only ``slimmable=dict(width_mult_list=[...], width_mult=1.0)``
    (default: the official MobileNetV2 list ``[0.7, 0.9, 1.0]``, at width 1).
    The slicing follows the official ``models/mobilenet_v2.py``: the stem and
    each block's output at ``slim_channels(C, w)``, the expansion conv at
    ``t`` times its block's active input (ratio ``t``), the depth-wise conv on
    the channels it receives, and the last 1x1 conv (to 1280, ``conv2``)
    reading the sliced input at full output width. Reachable from mmdet and
    mmseg configs as ``mmext.SlimmableMobileNetV2``; the neck reads the
    leading channels (``mmext.SlimmableFPN`` / ``SlimmableUPerHead``).

    Shapes: as mmdet's class at width 1; at width ``w`` the ``C``-channel
    outputs of the layers have ``slim_channels(C, w)`` channels (``conv2``
    keeps ``1280``).

    Raises:
        ValueError: a ``slimmable`` dict that :func:`~mmext.models.layers.
            slimmable.check_slimmable` refuses.

    Source: mmdet 3.3.0 ``MobileNetV2``; taoyang1122/MutualNet
    ``models/mobilenet_v2.py``, ``apps/mobilenet_v2.yml``.
    """

    def __init__(self, *args, slimmable=dict(width_mult_list=[0.7, 0.9, 1.0]), **kwargs):
        super().__init__(*args, **kwargs)

        def ratio_of(name, conv):
            # The expansion conv: t times its block's input (official ratio [1, t]).
            return conv.out_channels / conv.in_channels if name.endswith('expand_conv.conv') \
                else 1.0

        self.slimmable = make_slimmable(
            type(self).__name__, self, slimmable, ratio_of=ratio_of,
            slice_out_of=lambda name, conv: not name.startswith('conv2.'))

    def train(self, mode=True):
        """As mmdet's (frozen stages and ``norm_eval`` stay in eval mode), but
        returns ``self`` like ``nn.Module.train`` so ``.eval()`` chains."""
        super().train(mode)
        return self
