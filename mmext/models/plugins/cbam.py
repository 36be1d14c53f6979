"""Convolutional Block Attention Module (Woo et al., ECCV 2018,
https://arxiv.org/abs/1807.06521)."""
import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule, constant_init

from mmext.models.layers.protocols import AttentionMap, AttentionMaps, ComponentExample
from mmext.models.layers.unit_norm import check_norm_input
from mmext.models.official_layouts import OfficialLayout, linear_to_conv1x1, rename_resnet_keys
from mmext.registry import MODELS


def convert_cbam_resnet(state_dict):
    """CBAM ResNet (Woo et al., ECCV 2018; Jongchan/attention-module) to
    mmdet's ResNet with ``plugins=[dict(cfg=dict(type='mmext.CBAM'),
    position='after_conv3')]``.

    Official: ``cbam.ChannelGate.mlp.{1,3}`` (``nn.Linear``, after a
    Flatten) and ``cbam.SpatialGate.spatial.{conv,bn}``; mmext:
    ``cbam.channel_mlp.{0,1}.conv`` (1x1 convs) and
    ``cbam.spatial_conv.{conv,bn}``.

    Args:
        state_dict (dict[str, Tensor]): Official weights (``module.``
            already removed).

    Returns:
        dict[str, Tensor]: mmext keys; ``fc.*`` (classifier) dropped.
    """
    rules = [(r'\.cbam\.ChannelGate\.mlp\.1\.', '.cbam.channel_mlp.0.conv.'),
             (r'\.cbam\.ChannelGate\.mlp\.3\.', '.cbam.channel_mlp.1.conv.'),
             (r'\.cbam\.SpatialGate\.spatial\.', '.cbam.spatial_conv.')]
    return rename_resnet_keys(state_dict, rules, reshape=linear_to_conv1x1)


@MODELS.register_module()
class CBAM(BaseModule):
    """Convolutional Block Attention Module as a ResNet plugin.

    Channel gate, then spatial gate, each multiplying its input:

    - channel: a shared MLP (1x1 conv C->C/ratio with bias, ReLU, 1x1 conv
      C/ratio->C with bias) on the spatially average- and max-pooled
      vectors; the two outputs are summed, then sigmoid.
    - spatial: the channel-refined map is pooled across channels to
      ``[max, mean]`` (that order, as the official code), then a
      ``spatial_kernel`` conv 2->1 without bias, BN, sigmoid.

    In a bottleneck it goes at ``position='after_conv3'`` (after bn3, before
    the identity add), as in the official CBAM-ResNet.

    One image per device: the spatial norm sees ``N * H * W`` values of its
    single channel, so a BatchNorm fails only at batch 1 on a 1x1 map; that
    raises an :class:`~mmext.utils.errors.MMExtError` naming the fixes. The
    channel MLP has no norm. The mmext ResNet hosts pass their ``norm_cfg``
    (SyncBN in mmseg configs) to ``norm_cfg``, with the official momentum
    0.01 unless the host's BN sets its own.

    Args:
        in_channels (int): Channels of the input (and output).
        ratio (int): Reduction of the channel MLP; hidden width
            ``in_channels // ratio``. Defaults to 16.
        spatial_kernel (int): Odd kernel size of the spatial conv.
            Defaults to 7.
        norm_cfg (dict | None): Norm after the spatial conv, e.g.
            ``dict(type='GN', num_groups=1)``, or None for none (the conv
            then has a bias). Defaults to the official
            ``dict(type='BN', momentum=0.01)`` (PyTorch momentum).
        init_cfg (dict | list[dict], optional): Initialization config.
            Defaults to None.

    Raises:
        MMExtError: In training, when the spatial BatchNorm sees one value
            (batch 1 and a 1x1 map on this device).

    Note:
        :meth:`init_weights` follows the official training code and sets the
        spatial BN's weight to 0, so a freshly initialised spatial gate is
        sigmoid(0) = 0.5 everywhere. A module that is only constructed keeps
        BN's default weight of 1.
    """

    _abbr_ = 'cbam'
    # The argument a host fills with its own norm_cfg (unit_norm.with_host_norm).
    host_norm_args = ('norm_cfg',)
    attention_maps = AttentionMaps('CBAM', 'channel weights, spatial map', (
        AttentionMap('channel_activate', 'channel', 'channel'),
        AttentionMap('spatial_activate', 'spatial', 'spatial')))
    # The spatial norm sees N * H * W values: batch 1 runs on a 9x9 map.
    component_examples = (ComponentExample('plugin', dict(ratio=4)), )
    # Released as torchvision-style ResNets: `python -m mmext convert CBAM-ResNet`.
    official_layouts = (OfficialLayout('CBAM-ResNet', convert_cbam_resnet,
                                       config='cbam/retinanet_r50-cbam_fpn_1x_coco.py'), )

    @classmethod
    def adapt_host_norm(cls, arg, norm_cfg):
        """The host's norm with the official BN momentum of 0.01 unless the
        host sets one; a GroupNorm host gets one group (the spatial map has
        one channel)."""
        cfg = dict(norm_cfg)
        if cfg['type'] in ('GN', nn.GroupNorm):
            cfg['num_groups'] = 1
        elif isinstance(cfg['type'], str) and 'BN' in cfg['type'] and 'momentum' not in cfg:
            cfg['momentum'] = 0.01
        return cfg

    def __init__(self, in_channels, ratio=16, spatial_kernel=7,
                 norm_cfg=dict(type='BN', momentum=0.01), init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        hidden = in_channels // ratio
        assert hidden >= 1, f'CBAM needs in_channels >= ratio, got {in_channels} and {ratio}'
        assert spatial_kernel % 2 == 1, f'spatial_kernel must be odd, got {spatial_kernel}'
        self.in_channels = in_channels
        self.ratio = ratio
        self.channel_mlp = nn.Sequential(
            ConvModule(in_channels, hidden, 1, bias=True, act_cfg=dict(type='ReLU')),
            ConvModule(hidden, in_channels, 1, bias=True, act_cfg=None))
        self.channel_activate = nn.Sigmoid()
        self.spatial_conv = ConvModule(
            2, 1, spatial_kernel, padding=spatial_kernel // 2, bias=norm_cfg is None,
            norm_cfg=norm_cfg, act_cfg=None)
        self.spatial_activate = nn.Sigmoid()

    def init_weights(self):
        super().init_weights()
        # Not under a user init_cfg, which may be a checkpoint to keep.
        if self.init_cfg is None and self.spatial_conv.with_norm:
            constant_init(self.spatial_conv.norm, val=0, bias=0)

    def forward(self, x):
        n = x.shape[0]
        pooled = torch.cat([x.mean(dim=(2, 3), keepdim=True),
                            x.amax(dim=(2, 3), keepdim=True)])
        # One pass of the shared MLP over both descriptors, stacked on the batch.
        att = self.channel_mlp(pooled)
        x = x * self.channel_activate(att[:n] + att[n:])
        desc = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        if self.spatial_conv.with_norm:
            check_norm_input(self.spatial_conv.norm, desc[:, :1], self, 'norm_cfg')
        return x * self.spatial_activate(self.spatial_conv(desc))
