"""The ResNet host for mmext's plugins and convolutions.

mmdet's ResNet family carries the ``plugins=`` and ``dcn=`` mechanisms, but in
mmdet 3.3.0 / mmseg 1.2.2:

* ``BasicBlock`` asserts ``dcn is None`` and ``plugins is None``, so ResNet-18/34
  can take neither an attention plugin nor a swapped convolution;
* two plugins of one type in a block (e.g. SE after conv2 and after conv3) both
  get the name ``se`` and the block refuses the second;
* mmseg's ``Bottleneck.forward_plugin`` feeds the block input to every plugin of
  a position instead of chaining them;
* ``conv_cfg`` reaches the stem and the downsample path too, while designs such
  as ODConv-ResNet swap only the convolutions inside the residual blocks.

The classes below extend mmdet's (same arguments, same state-dict layout, so
mmdet / mmseg / torchvision-converted checkpoints load unchanged) and close
those gaps: plugins and ``dcn`` on BasicBlock, uniquely named chained plugins,
and ``block_conv_cfg`` for the residual-block convolutions only.
"""
from mmcv.cnn import build_plugin_layer
from mmdet.models.backbones.resnet import BasicBlock as _BasicBlock
from mmdet.models.backbones.resnet import Bottleneck as _Bottleneck
from mmdet.models.backbones.resnet import ResNet as _ResNet
from mmdet.models.backbones.resnext import Bottleneck as _XBottleneck
from mmdet.models.backbones.resnext import ResNeXt as _ResNeXt
from torch.utils import checkpoint as cp

from mmext.registry import MODELS

PLUGIN_POSITIONS = ('after_conv1', 'after_conv2', 'after_conv3')


def _block_conv(conv_cfg, block_conv_cfg):
    return conv_cfg if block_conv_cfg is None else block_conv_cfg


class PluginChainMixin:
    """Plugins of one position run in order, each on the previous one's output,
    and get distinct module names (``se``, ``se_1``, ...) when a type repeats."""

    def make_block_plugins(self, in_channels, plugins):
        names = []
        for plugin in plugins:
            plugin = plugin.copy()
            name, layer = build_plugin_layer(
                plugin, in_channels=in_channels, postfix=plugin.pop('postfix', ''))
            base, k = name, 0
            while hasattr(self, name):
                k += 1
                name = f'{base}_{k}'
            self.add_module(name, layer)
            names.append(name)
        return names

    def forward_plugin(self, x, plugin_names):
        for name in plugin_names:
            x = getattr(self, name)(x)
        return x


class PreactMixin:
    """``forward_preact`` returns the residual sum before the block's final
    ReLU (what SDA weighs across blocks); ``forward`` is its ReLU."""

    def forward_preact(self, x):
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._residual_sum, x, use_reentrant=False)
        return self._residual_sum(x)

    def forward(self, x):
        return self.relu(self.forward_preact(x))


class BottleneckResidualMixin(PreactMixin):

    def _residual_sum(self, x):
        out = self.relu(self.norm1(self.conv1(x)))
        if self.with_plugins:
            out = self.forward_plugin(out, self.after_conv1_plugin_names)
        out = self.relu(self.norm2(self.conv2(out)))
        if self.with_plugins:
            out = self.forward_plugin(out, self.after_conv2_plugin_names)
        out = self.norm3(self.conv3(out))
        if self.with_plugins:
            out = self.forward_plugin(out, self.after_conv3_plugin_names)
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class BasicBlock(PluginChainMixin, PreactMixin, _BasicBlock):
    """mmdet's BasicBlock with plugins and a convolution slot.

    Both convolutions of a BasicBlock are the 3x3 ones, so ``dcn`` (like
    ``block_conv_cfg``) replaces both. Plugin positions: ``after_conv1`` (after
    conv1-norm1-relu) and ``after_conv2`` (after norm2, before the residual add,
    where SE/ECA/CBAM sit).
    """

    def __init__(self, inplanes, planes, conv_cfg=None, dcn=None, plugins=None,
                 block_conv_cfg=None, **kwargs):
        conv_cfg = _block_conv(conv_cfg, block_conv_cfg)
        if dcn is not None:
            dcn = dcn.copy()
            if not dcn.pop('fallback_on_stride', False):
                if conv_cfg is not None:
                    raise ValueError('conv_cfg / block_conv_cfg must be None when dcn is set: '
                                     'both name the block convolutions')
                conv_cfg = dcn
        super().__init__(inplanes, planes, conv_cfg=conv_cfg, **kwargs)
        plugins = plugins or []
        bad = [p['position'] for p in plugins if p['position'] not in PLUGIN_POSITIONS[:2]]
        if bad:
            raise ValueError(f'BasicBlock plugin positions are after_conv1 / after_conv2, got {bad}')
        self.with_plugins = bool(plugins)
        self.after_conv1_plugin_names = self.make_block_plugins(
            planes, [p['cfg'] for p in plugins if p['position'] == 'after_conv1'])
        self.after_conv2_plugin_names = self.make_block_plugins(
            planes * self.expansion,
            [p['cfg'] for p in plugins if p['position'] == 'after_conv2'])

    def _residual_sum(self, x):
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.forward_plugin(out, self.after_conv1_plugin_names)
        out = self.norm2(self.conv2(out))
        out = self.forward_plugin(out, self.after_conv2_plugin_names)
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class Bottleneck(PluginChainMixin, BottleneckResidualMixin, _Bottleneck):
    """mmdet's Bottleneck; ``block_conv_cfg`` builds conv1/conv2/conv3 (``dcn``
    still swaps only the 3x3)."""

    def __init__(self, inplanes, planes, conv_cfg=None, block_conv_cfg=None, **kwargs):
        super().__init__(inplanes, planes, conv_cfg=_block_conv(conv_cfg, block_conv_cfg),
                         **kwargs)


class XBottleneck(PluginChainMixin, BottleneckResidualMixin, _XBottleneck):
    """mmdet ResNeXt's grouped Bottleneck with the same extensions."""

    def __init__(self, inplanes, planes, conv_cfg=None, block_conv_cfg=None, **kwargs):
        super().__init__(inplanes, planes, conv_cfg=_block_conv(conv_cfg, block_conv_cfg),
                         **kwargs)


@MODELS.register_module()
class ResNet(_ResNet):
    """mmdet's ResNet as a host for mmext's plugins and convolutions.

    Takes every argument of ``mmdet.models.backbones.ResNet`` and:

    Args:
        block_conv_cfg (dict, optional): Convolution for every conv inside the
            residual blocks (conv1/conv2/conv3 of a Bottleneck, both 3x3 of a
            BasicBlock); the stem and the downsample path keep ``conv_cfg``.
            This is the ODConv-ResNet placement. Default: None.

    ``plugins`` and ``dcn`` work on ResNet-18/34 as on the bottleneck depths.

    Example:
        >>> backbone = dict(type='mmext.ResNet', depth=18, plugins=[
        ...     dict(cfg=dict(type='mmext.SE'), position='after_conv2')])
    """

    arch_settings = {
        18: (BasicBlock, (2, 2, 2, 2)),
        34: (BasicBlock, (3, 4, 6, 3)),
        50: (Bottleneck, (3, 4, 6, 3)),
        101: (Bottleneck, (3, 4, 23, 3)),
        152: (Bottleneck, (3, 8, 36, 3)),
    }

    def __init__(self, depth, block_conv_cfg=None, zero_init_residual=True, pretrained=None,
                 init_cfg=None, **kwargs):
        # Read by make_res_layer, which runs inside the parent's __init__.
        self.block_conv_cfg = block_conv_cfg
        # mmdet zero-inits the last norm of a block only for its own block
        # classes (an identity check), so the rule is repeated for these.
        self._zero_init_blocks = zero_init_residual and pretrained is None and init_cfg is None
        super().__init__(depth=depth, zero_init_residual=zero_init_residual,
                         pretrained=pretrained, init_cfg=init_cfg, **kwargs)

    def block_kwargs(self, kwargs):
        """The host's additions to the arguments every block of a stage gets."""
        if kwargs.get('init_cfg') is None and self._zero_init_blocks:
            last_norm = 'norm2' if issubclass(kwargs['block'], _BasicBlock) else 'norm3'
            kwargs['init_cfg'] = dict(type='Constant', val=0, override=dict(name=last_norm))
        return dict(kwargs, block_conv_cfg=self.block_conv_cfg)

    def make_res_layer(self, **kwargs):
        return super().make_res_layer(**self.block_kwargs(kwargs))

    def train(self, mode=True):
        """As mmdet's (frozen stages and ``norm_eval`` stay in eval mode), but
        returns ``self`` like ``nn.Module.train`` so ``.eval()`` chains."""
        super().train(mode)
        return self


@MODELS.register_module()
class ResNetV1d(ResNet):
    """ResNet-D host: deep stem and average-pool downsampling."""

    def __init__(self, **kwargs):
        super().__init__(deep_stem=True, avg_down=True, **kwargs)


@MODELS.register_module()
class ResNetV1c(ResNet):
    """ResNet-C host (deep stem), the backbone of mmseg's configs.

    Accepts mmseg's ``contract_dilation`` / ``multi_grid`` so an mmseg config
    only swaps the type; they change nothing at the dilation 1 of UperNet's
    and FPN's configs, and dilated-stage configs are refused rather than
    silently built differently from mmseg's ResNetV1c.
    """

    def __init__(self, contract_dilation=False, multi_grid=None, **kwargs):
        dilations = kwargs.get('dilations', (1, 1, 1, 1))
        if multi_grid is not None or (contract_dilation and max(dilations) > 1):
            raise ValueError(
                'mmext.ResNetV1c does not implement multi_grid or contracted dilations '
                f'(dilations={tuple(dilations)}); use mmseg ResNetV1c for dilated-stage '
                'configs (PSPNet / DeepLab)')
        super().__init__(deep_stem=True, avg_down=False, **kwargs)


@MODELS.register_module()
class ResNeXt(ResNet, _ResNeXt):
    """mmdet's ResNeXt (``groups``, ``base_width``) with the host extensions;
    the 3x3 in the ``dcn`` slot receives ``groups`` (SKNet's G)."""

    arch_settings = {
        50: (XBottleneck, (3, 4, 6, 3)),
        101: (XBottleneck, (3, 4, 23, 3)),
        152: (XBottleneck, (3, 8, 36, 3)),
    }
