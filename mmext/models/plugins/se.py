"""Squeeze-and-Excitation (Hu et al., CVPR 2018, https://arxiv.org/abs/1709.01507)."""
from mmdet.models.layers import SELayer

from mmext.models.layers.protocols import AttentionMap, AttentionMaps, ComponentExample
from mmext.registry import MODELS


@MODELS.register_module()
class SE(SELayer):
    """Squeeze-and-Excitation as a ResNet plugin.

    ``GAP -> 1x1 conv C->C/ratio (bias) -> ReLU -> 1x1 conv C/ratio->C (bias)
    -> sigmoid`` gives one weight per channel that scales the input. In a
    bottleneck it goes at ``position='after_conv3'``: after bn3, on the
    residual branch, before the identity add (as in SE-ResNet).

    mmdet's ``SELayer`` already computes exactly this (hidden width
    ``int(C / ratio)``, i.e. SENet's ``C // ratio``, biases on both FCs,
    sigmoid gate); this subclass only renames its argument to the
    ``in_channels=`` that mmcv's ``build_plugin_layer`` passes. The 1x1 convs
    on a 1x1 map have the parameters of SENet's linear layers.

    Args:
        in_channels (int): Channels of the input (and output).
        ratio (int): Squeeze ratio; the hidden width is
            ``int(in_channels / ratio)``. Defaults to 16.
        conv_cfg (dict, optional): Config of the two 1x1 convs.
            Defaults to None (``nn.Conv2d``).
        act_cfg (dict | Sequence[dict]): Activations after the first and the
            second conv; one dict is used for both.
            Defaults to ``(dict(type='ReLU'), dict(type='Sigmoid'))``.
        init_cfg (dict | list[dict], optional): Initialization config.
            Defaults to None.

    Example:
        >>> from mmcv.cnn import build_plugin_layer
        >>> name, se = build_plugin_layer(dict(type='mmext.SE'), in_channels=256)
        >>> name
        'se'
    """

    _abbr_ = 'se'
    # No norm inside (trains at one image per device): nothing for a host to
    # pass (unit_norm.with_host_norm).
    host_norm_args = ()
    # conv2's output is the sigmoid weight per channel (mmdet's ConvModule
    # with the Sigmoid act) that scales the input.
    attention_maps = AttentionMaps('SE', 'channel weights', (
        AttentionMap('conv2', 'channel', 'channel'), ))
    component_examples = (ComponentExample('plugin', dict(ratio=4)), )

    def __init__(self,
                 in_channels,
                 ratio=16,
                 conv_cfg=None,
                 act_cfg=(dict(type='ReLU'), dict(type='Sigmoid')),
                 init_cfg=None):
        # A zero-width bottleneck would silently make the gate a constant.
        assert int(in_channels / ratio) >= 1, (
            f'SE needs in_channels >= ratio, got {in_channels} and {ratio}')
        super().__init__(
            channels=in_channels, ratio=ratio, conv_cfg=conv_cfg, act_cfg=act_cfg,
            init_cfg=init_cfg)
        self.in_channels = in_channels
        self.ratio = ratio
