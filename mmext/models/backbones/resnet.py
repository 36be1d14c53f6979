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
``block_conv_cfg`` for the residual-block convolutions only, the
all-convolutional stem (``stem_pool='conv'``: a strided convolution in place
of the stem's max pooling), and two slots for designs that replace a whole
part: ``block_cfg`` (a residual block of another design in place of the
host's) and ``stem_cfg`` (another stem).
"""
import inspect

from mmcv.cnn import ConvModule, build_norm_layer, build_plugin_layer
from mmdet.models.backbones.resnet import BasicBlock as _BasicBlock
from mmdet.models.backbones.resnet import Bottleneck as _Bottleneck
from mmdet.models.backbones.resnet import ResNet as _ResNet
from mmdet.models.backbones.resnext import Bottleneck as _XBottleneck
from mmdet.models.backbones.resnext import ResNeXt as _ResNeXt
from torch import nn
from torch.utils import checkpoint as cp

from mmext.models.layers.slimmable import make_slimmable
from mmext.models.layers.stochastic_depth import DropPathMixin, set_drop_path_rates
from mmext.models.layers.unit_norm import unit_class, with_host_norm
from mmext.registry import MODELS
from .base_backbone import check_stage_args

PLUGIN_POSITIONS = ('after_conv1', 'after_conv2', 'after_conv3')
# The stem's downsampling after its convolutions: mmdet's max pool, or the
# all-convolutional net's strided convolution (Springenberg et al.).
STEM_POOLS = ('max', 'conv')
# Which blocks of a stage with ``block_cfg`` are replaced.
BLOCK_CFG_BLOCKS = ('all', 'first')
# The convolutions whose output width ``mid_channels`` sets, per block class:
# the ones inside the residual branch, not the block output on the shortcut.
MID_CONVS = {'BasicBlock': ('conv1', ), 'Bottleneck': ('conv1', 'conv2')}


def _block_conv(conv_cfg, block_conv_cfg):
    return conv_cfg if block_conv_cfg is None else block_conv_cfg


def host_norm_kwargs(kwargs, block_conv_cfg):
    """``block_conv_cfg``, ``dcn`` and the plugin cfgs of a stage, each unit
    given the host's ``norm_cfg`` for the arguments its class lists in
    ``host_norm_args`` (unless the cfg sets them): SyncBN in an mmseg config
    reaches the norms inside ODConv, SK, TAdaConv, CBAM, ... as it reaches
    the block's own. mmdet's ``conv_cfg`` (it also builds the stem) is left
    as given."""
    norm_cfg = kwargs.get('norm_cfg')
    out = dict(block_conv_cfg=with_host_norm(block_conv_cfg, norm_cfg))
    if kwargs.get('dcn') is not None:
        out['dcn'] = with_host_norm(kwargs['dcn'], norm_cfg)
    if kwargs.get('plugins'):
        out['plugins'] = [dict(p, cfg=with_host_norm(p['cfg'], norm_cfg))
                          for p in kwargs['plugins']]
    return out


def check_mid_channels(name, mid_channels, block, stage_blocks):
    """``mid_channels`` as lists (see :class:`ResNet`): one entry per stage,
    each None or one entry per block, each None or one positive int per
    inner convolution of ``block``.

    Raises:
        ValueError: any entry of the wrong length or type (one line, naming it).
    """
    n = len(MID_CONVS.get(block.__name__, ('conv1', 'conv2')))
    what = '[conv1, conv2]' if n == 2 else '[conv1]'
    if not isinstance(mid_channels, (list, tuple)) or len(mid_channels) != len(stage_blocks):
        raise ValueError(f'{name}: mid_channels needs one entry per stage ({len(stage_blocks)}), '
                         f'each None or a list per block; got {mid_channels!r}')
    out = []
    for i, (stage, blocks) in enumerate(zip(mid_channels, stage_blocks)):
        if stage is None:
            out.append(None)
            continue
        if not isinstance(stage, (list, tuple)) or len(stage) != blocks:
            raise ValueError(f'{name}: mid_channels[{i}] needs one entry per block of stage {i} '
                             f'({blocks}), each None or {what}; got {stage!r}')
        entries = []
        for j, entry in enumerate(stage):
            ok = entry is None or (
                isinstance(entry, (list, tuple)) and len(entry) == n and
                all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in entry))
            if not ok:
                raise ValueError(f'{name}: mid_channels[{i}][{j}] = {entry!r}; expected None or '
                                 f'{what}, {n} positive int(s)')
            entries.append(None if entry is None else tuple(entry))
        out.append(tuple(entries))
    return tuple(out)


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


class PreactMixin(DropPathMixin):
    """``forward_preact`` returns the residual sum before the block's final
    ReLU (what SDA weighs across blocks); ``forward`` is its ReLU. The
    residual branch goes through ``drop_residual`` (stochastic depth, set by
    the host's ``drop_path_rate``) before the sum."""

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
        return self.drop_residual(out) + identity


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
        return self.drop_residual(out) + identity


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

    A drop-in replacement for ``mmdet.models.backbones.ResNet`` (mmdet 3.3.0):
    the same positional and keyword arguments in the same order with the same
    defaults (``stem_channels=None``, i.e. ``base_channels``;
    ``norm_eval=True``), the same module names and state dict, the same
    initialisation and the same outputs. ``zero_init_residual`` zeroes the
    last norm of every block, as mmdet does for its BasicBlock / Bottleneck.
    mmext's additions are keyword-only:

    Args:
        depth (int): 18, 34, 50, 101 or 152. Every other positional or
            keyword argument is mmdet ResNet's, in its order.
        block_conv_cfg (dict, optional): Keyword-only. Convolution for every
            conv inside the residual blocks (conv1/conv2/conv3 of a
            Bottleneck, both 3x3 of a BasicBlock); the stem and the downsample
            path keep ``conv_cfg``. This is the ODConv-ResNet placement.
            Default: None.
        stem_pool (str): Keyword-only. How the stem halves its resolution
            after its convolutions: ``'max'`` (mmdet's 3x3 stride-2 max
            pooling) or ``'conv'``, the all-convolutional stem of
            Springenberg et al. ("Striving for Simplicity: The All
            Convolutional Net", arXiv 1412.6806): a 3x3 stride-2
            convolution with the stem's width in and out (``conv_cfg``),
            followed by the host's ``norm_cfg`` and ReLU (mmcv
            ``ConvModule``, module ``pool_conv``; 9 C^2 + 2 C parameters
            for a C-channel stem). Both give ``ceil(H / 2)``, so every
            stage keeps its output size; the max-pool stem is unchanged
            (same modules and state dict). ``frozen_stages >= 0`` freezes
            ``pool_conv`` with the stem. Default: ``'max'``.
        block_cfg (dict, optional): Keyword-only. A registered residual
            block (component kind ``'block'``, e.g. ``mmext.MinBlock``,
            ``mmext.MGBlock``) built in place of the host's BasicBlock /
            Bottleneck as ``type(in_channels, out_channels, stride=,
            dilation=, **rest)``, with the replaced block's input width,
            output width (``planes * expansion``), stride and dilation; the
            block brings its own shortcut. Its class's ``host_norm_args`` get
            the host's ``norm_cfg``, and ``with_cp`` is passed on when the
            class takes it. Default: None.
        stage_with_block_cfg (tuple[bool]): Keyword-only. Stages whose blocks
            ``block_cfg`` replaces. Default: all four.
        block_cfg_blocks (str): Keyword-only. ``'all'`` blocks of those
            stages or only the ``'first'`` (the one that changes resolution
            and width, where Min-Nets put their block). Default: ``'all'``.
        stem_cfg (dict, optional): Keyword-only. A registered stem (component
            kind ``'stem'``, e.g. ``mmext.CModStem``) built as
            ``type(in_channels, stem_channels, **rest)`` in place of the whole
            stem (conv1, norm1, ReLU and max pool, or the deep stem of V1c /
            V1d): it must give ``ceil(H / 4)``. Module ``stem``; frozen at
            ``frozen_stages >= 0`` as mmdet's stem. Default: None.
        drop_path_rate (float): Keyword-only. Stochastic depth (Huang et
            al., arXiv 1603.09382) on the residual branch of every block, in
            training: block ``i`` of the network's ``L`` blocks (all stages,
            counted from 0) drops its branch per sample with probability
            ``drop_path_rate * i / (L - 1)`` (timm's linear rule) and scales
            the kept ones by ``1 / (1 - p)``; the branch is dropped after its
            plugins, right before the shortcut is added. A ``block_cfg``
            block takes part when it has a residual branch
            (``DropPathMixin``, e.g. ``MinBlock``). Eval mode, frozen stages
            and ``0`` (default: no module added, bit-identical outputs) drop
            nothing. See :mod:`mmext.models.layers.stochastic_depth`.
        slimmable (dict, optional): Keyword-only. MutualNet / US-Net width
            slicing (:mod:`mmext.models.layers.slimmable`):
            ``dict(width_mult_list=[...], width_mult=1.0)``. Every conv and BN
            is converted after construction (same parameters and state dict,
            plus per-width BN statistics for ``width_mult_list``; width 1 is
            always kept) and the network runs at ``width_mult`` (changed by
            ``mmext.models.layers.slimmable.set_width_mult``). A conv of
            stage ``i`` outputs ``slim_channels(C, w, C / R_i)`` channels with
            ``R_i = out_channels[i]`` (the stem: ``R = base_channels *
            expansion``), the official MutualNet ResNet's ratios (a
            bottleneck's inner width a quarter of its output, the stem's 64 of
            256). ``out_channels`` stay the full widths: the neck reads the
            leading channels (``mmext.SlimmableFPN`` / ``SlimmableUPerHead`` /
            ``SlimmableFCNHead``). Plugins made of convs and BNs (SE) are
            sliced likewise; other modules with parameters (ODConv, GN,
            ResNeXt's grouped conv, ...) are refused. SyncBN becomes a
            per-process slimmable BN (no synchronisation). Default: None.
        mid_channels (list, optional): Keyword-only. Widths inside the
            residual blocks, e.g. of a pruned network
            (``tools/analysis_tools/prune.py`` writes them): one entry per
            stage, ``None`` (the stage as built) or one entry per block of the
            stage, each ``None`` or a list of the output widths of the
            block's inner convolutions: ``[conv1, conv2]`` for a Bottleneck
            (conv2 / conv3 read them), ``[conv1]`` for a BasicBlock (conv2
            reads it). The block outputs (conv3 / the BasicBlock's conv2, the
            downsample path) and the stem keep their widths, so
            ``out_channels`` and the neck are unchanged; module names stay,
            only the tensors of conv1/norm1/conv2 (/norm2/conv3) are smaller.
            Default: None.

    ``plugins`` and ``dcn`` work on ResNet-18/34 as on the bottleneck depths
    (BasicBlock positions ``after_conv1`` / ``after_conv2``).

    Shapes: an input ``(N, in_channels, H, W)`` gives, for every stage ``i``
    in ``out_indices``, ``(N, out_channels[i], ceil(H / out_strides[i]),
    ceil(W / out_strides[i]))``: ``out_channels[i] = base_channels * 2**i *
    expansion`` with ``expansion`` 1 (depth 18/34) or 4, and ``out_strides``
    4, 8, 16, 32 at the default ``strides`` (4 times their running product).
    ``out_channels`` / ``out_strides`` (one entry per stage) are the
    attributes every mmext backbone has (see
    :class:`~mmext.models.backbones.DenseBackbone`); :meth:`stage_modules`
    says what ``frozen_stages`` freezes (as mmdet, from construction on).

    Raises:
        KeyError: ``depth`` is not one of the above (as mmdet).
        ValueError: ``out_indices`` or ``frozen_stages`` outside the
            ``num_stages`` stages, repeated or decreasing ``out_indices``
            (where mmdet asserts only the largest index).
        ValueError: a BasicBlock plugin at ``after_conv3``, or ``dcn`` together
            with ``conv_cfg`` / ``block_conv_cfg`` on a BasicBlock.
        ValueError: ``stem_pool`` other than ``'max'`` / ``'conv'``;
            ``stem_cfg`` together with ``stem_pool='conv'``;
            ``block_cfg_blocks`` other than ``'all'`` / ``'first'``,
            ``stage_with_block_cfg`` not one flag per stage, or ``with_cp``
            with a ``block_cfg`` class that does not take it.
        ValueError: ``drop_path_rate`` outside ``[0, 1)``, or above 0 with a
            ``block_cfg`` block that has no residual branch (``MGBlock``).
        ValueError: ``slimmable`` with unknown keys or a width outside
            ``(0, 1]``, or on a network with a module it cannot slice.
        ValueError: ``mid_channels`` not one entry per stage / block, a
            width that is not a positive int, or set on a block it cannot
            resize: a ``block_cfg`` / ResNeXt block, a convolution other than
            a plain ``nn.Conv2d`` (``dcn``, ``block_conv_cfg``, ``conv_cfg``),
            or a plugin after conv1 / conv2 (built for the full width).

    Source: mmdet 3.3.0 ``mmdet/models/backbones/resnet.py``; He et al.,
    "Deep Residual Learning for Image Recognition", CVPR 2016.

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
    # Which blocks zero_init_residual zeroes, and their last norm. mmdet's
    # rule is an identity check (``block is BasicBlock`` / ``is Bottleneck``)
    # that skips every other block class, its own ResNeXt block included;
    # this table is that rule for the host's block classes.
    zero_init_norms = {BasicBlock: 'norm2', Bottleneck: 'norm3'}
    # Small instances for tests/test_backbone_contract.py: both block types,
    # a plugin chain on the BasicBlock.
    backbone_examples = (
        # SE at ratio 4: the default 16 would leave one hidden channel at
        # these widths, a ReLU that may be dead for a whole batch.
        dict(depth=18, base_channels=16,
             plugins=[dict(cfg=dict(type='mmext.SE', ratio=4), position='after_conv2')]),
        # The all-convolutional stem (stem_pool='conv') on the bottleneck one.
        dict(depth=50, base_channels=8, stem_channels=16, stem_pool='conv'),
    )

    def __init__(self,
                 depth,
                 in_channels=3,
                 stem_channels=None,
                 base_channels=64,
                 num_stages=4,
                 strides=(1, 2, 2, 2),
                 dilations=(1, 1, 1, 1),
                 out_indices=(0, 1, 2, 3),
                 style='pytorch',
                 deep_stem=False,
                 avg_down=False,
                 frozen_stages=-1,
                 conv_cfg=None,
                 norm_cfg=dict(type='BN', requires_grad=True),
                 norm_eval=True,
                 dcn=None,
                 stage_with_dcn=(False, False, False, False),
                 plugins=None,
                 with_cp=False,
                 zero_init_residual=True,
                 pretrained=None,
                 init_cfg=None,
                 *,
                 block_conv_cfg=None,
                 stem_pool='max',
                 block_cfg=None,
                 stage_with_block_cfg=(True, True, True, True),
                 block_cfg_blocks='all',
                 stem_cfg=None,
                 drop_path_rate=0.0,
                 mid_channels=None,
                 slimmable=None):
        name = type(self).__name__
        out_indices = check_stage_args(name, num_stages, out_indices, frozen_stages)
        if stem_pool not in STEM_POOLS:
            raise ValueError(f"{name}: stem_pool={stem_pool!r}; expected one of "
                             f"{', '.join(repr(p) for p in STEM_POOLS)}")
        if stem_cfg is not None and stem_pool != 'max':
            raise ValueError(f'{name}: stem_cfg replaces the whole stem, its downsampling '
                             f'included; it cannot be combined with stem_pool={stem_pool!r}')
        if block_cfg_blocks not in BLOCK_CFG_BLOCKS:
            raise ValueError(f"{name}: block_cfg_blocks={block_cfg_blocks!r}; expected 'all' or "
                             "'first'")
        if len(stage_with_block_cfg) != num_stages:
            raise ValueError(f'{name}: stage_with_block_cfg has {len(stage_with_block_cfg)} '
                             f'flags for {num_stages} stages')
        # Read by _make_stem_layer, which runs inside the parent's __init__.
        self.stem_pool = stem_pool
        self.stem_cfg = stem_cfg
        # Read by make_res_layer, which runs inside the parent's __init__.
        self.block_conv_cfg = block_conv_cfg
        self.block_cfg = block_cfg
        self.stage_with_block_cfg = tuple(stage_with_block_cfg)
        self.block_cfg_blocks = block_cfg_blocks
        block, stage_blocks = self.arch_settings.get(depth, (None, None))
        # Read by resize_blocks, inside the parent's __init__.
        self.mid_channels = (None if mid_channels is None or stage_blocks is None else
                             check_mid_channels(name, mid_channels, block,
                                                stage_blocks[:num_stages]))
        self._zero_init_norm = (
            self.zero_init_norms.get(block)
            if zero_init_residual and pretrained is None and init_cfg is None else None)
        # Named rather than super(): for mmext.ResNeXt the next class in the
        # MRO is mmdet's ResNeXt, whose __init__ would reset groups and
        # base_width to its defaults (mmext.ResNeXt sets them itself).
        _ResNet.__init__(
            self, depth=depth, in_channels=in_channels, stem_channels=stem_channels,
            base_channels=base_channels, num_stages=num_stages, strides=strides,
            dilations=dilations, out_indices=out_indices, style=style, deep_stem=deep_stem,
            avg_down=avg_down, frozen_stages=frozen_stages, conv_cfg=conv_cfg,
            norm_cfg=norm_cfg, norm_eval=norm_eval, dcn=dcn, stage_with_dcn=stage_with_dcn,
            plugins=plugins, with_cp=with_cp, zero_init_residual=zero_init_residual,
            pretrained=pretrained, init_cfg=init_cfg)
        set_drop_path_rates(name, [getattr(self, n) for n in self.res_layers], drop_path_rate)
        self.drop_path_rate = drop_path_rate
        self.slimmable = None if slimmable is None else self.make_slimmable(slimmable)
        # mmdet builds stage i with base_channels * 2**i planes; the stem
        # (stride-2 conv, stride-2 max pool or pool_conv) gives stride 4 before
        # the stages.
        self.out_channels = tuple(self.base_channels * 2**i * self.block.expansion
                                  for i in range(num_stages))
        strides, stride = [], 4
        for s in self.strides[:num_stages]:
            stride *= s
            strides.append(stride)
        self.out_strides = tuple(strides)

    def make_slimmable(self, slimmable):
        """Convert the built network for the ``slimmable`` option (see the
        class docstring); returns the option's resolved dict."""
        name = type(self).__name__
        stage_widths = [self.base_channels * 2**i * self.block.expansion
                        for i in range(len(self.res_layers))]

        def ratio_of(module_name, conv):
            stage = module_name.split('.')[0]
            reference = (stage_widths[self.res_layers.index(stage)]
                         if stage in self.res_layers else stage_widths[0])
            return conv.out_channels / reference

        return make_slimmable(name, self, slimmable, ratio_of=ratio_of)

    def stage_modules(self, index):
        """Modules of stage ``index`` (0-based) as mmdet's ``_freeze_stages``
        freezes them: the stem with stage 0 (mmdet freezes the stem alone at
        ``frozen_stages=0``, unlike the mmext designs), then ``layer{i+1}``."""
        layer = getattr(self, self.res_layers[index])
        if index:
            return [layer]
        if self.stem_cfg is not None or self.deep_stem:
            stem = [self.stem]
        else:
            stem = [self.conv1, getattr(self, self.norm1_name)]
        if self.stem_pool == 'conv':
            stem.append(self.pool_conv)
        return stem + [layer]

    def _make_stem_layer(self, in_channels, stem_channels):
        """mmdet's stem; with ``stem_pool='conv'`` the max pool is replaced by
        ``pool_conv`` (3x3 stride-2 conv, norm, ReLU; same padding as the pool,
        hence the same ``ceil(H / 2)``); with ``stem_cfg``, that stem alone."""
        if self.stem_cfg is not None:
            self.stem = MODELS.build(dict(with_host_norm(self.stem_cfg, self.norm_cfg),
                                          in_channels=in_channels, out_channels=stem_channels))
            return
        super()._make_stem_layer(in_channels, stem_channels)
        if self.stem_pool == 'conv':
            del self.maxpool
            self.pool_conv = ConvModule(stem_channels, stem_channels, 3, stride=2, padding=1,
                                        conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg,
                                        act_cfg=dict(type='ReLU'))

    def _freeze_stages(self):
        if self.stem_cfg is not None:
            # mmdet's rule (the stem at frozen_stages >= 0, then layer1..) for
            # a stem mmdet's code does not know.
            frozen = [self.stem] if self.frozen_stages >= 0 else []
            frozen += [getattr(self, f'layer{i}') for i in range(1, self.frozen_stages + 1)]
            for module in frozen:
                module.eval()
                for param in module.parameters():
                    param.requires_grad = False
            return
        super()._freeze_stages()
        # mmdet's rule freezes the stem at frozen_stages >= 0; pool_conv is
        # part of the stem.
        if self.frozen_stages >= 0 and self.stem_pool == 'conv':
            self.pool_conv.eval()
            for param in self.pool_conv.parameters():
                param.requires_grad = False

    def forward(self, x):
        """mmdet's forward with the stem's downsampling of ``stem_pool``: a
        tuple with one ``(N, out_channels[i], ceil(H / out_strides[i]),
        ceil(W / out_strides[i]))`` map per entry ``i`` of ``out_indices``."""
        if self.stem_cfg is not None:
            x = self.stem(x)
        else:
            x = self.stem(x) if self.deep_stem else self.relu(self.norm1(self.conv1(x)))
            x = self.pool_conv(x) if self.stem_pool == 'conv' else self.maxpool(x)
        outs = []
        for i, layer_name in enumerate(self.res_layers):
            x = getattr(self, layer_name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def block_kwargs(self, kwargs):
        """The host's additions to the arguments every block of a stage gets."""
        if kwargs.get('init_cfg') is None and self._zero_init_norm is not None:
            kwargs['init_cfg'] = dict(type='Constant', val=0,
                                      override=dict(name=self._zero_init_norm))
        return dict(kwargs, **host_norm_kwargs(kwargs, self.block_conv_cfg))

    def make_res_layer(self, **kwargs):
        layer = self.replace_blocks(super().make_res_layer(**self.block_kwargs(kwargs)), kwargs)
        return self.resize_blocks(layer)

    def resize_blocks(self, layer):
        """``layer`` (a stage just built, before it joins ``res_layers``)
        with the inner widths ``mid_channels`` gives it: conv1 / norm1 /
        conv2 (/ norm2 / conv3) rebuilt at the new widths (fresh weights,
        the host's ``norm_cfg``), every other setting of the convolution
        kept."""
        stage = len(self.res_layers)
        widths = None if self.mid_channels is None else self.mid_channels[stage]
        if widths is None:
            return layer
        name = type(self).__name__
        for j, (block, entry) in enumerate(zip(layer, widths)):
            if entry is None:
                continue
            where = f'{name}: mid_channels[{stage}][{j}]'
            kind = type(block).__name__
            if type(block) not in (BasicBlock, Bottleneck):
                raise ValueError(f'{where} is set on a {kind} block; mid_channels resizes the '
                                 "host's BasicBlock / Bottleneck only (no block_cfg, no ResNeXt)")
            convs = MID_CONVS[kind]
            plugged = [p for p in convs if getattr(block, f'after_{p}_plugin_names', None)]
            if plugged:
                raise ValueError(f'{where}: the block has plugins after {plugged[0]}, built for '
                                 'its full width; drop them or mid_channels')
            # conv1 -> norm1 -> conv2 (-> norm2 -> conv3): conv k's output
            # width is the input of conv k+1.
            chain = [getattr(block, c) for c in convs] + [getattr(block, f'conv{len(convs) + 1}')]
            for c, conv in zip(convs + (f'conv{len(convs) + 1}', ), chain):
                if type(conv) is not nn.Conv2d or conv.groups != 1:
                    raise ValueError(f'{where}: {c} is a {type(conv).__name__}; mid_channels '
                                     'resizes plain nn.Conv2d convolutions only (no dcn, '
                                     'block_conv_cfg or conv_cfg)')
            ins = [chain[0].in_channels] + list(entry)
            outs = list(entry) + [chain[-1].out_channels]
            for k, conv in enumerate(chain):
                setattr(block, f'conv{k + 1}', nn.Conv2d(
                    ins[k], outs[k], conv.kernel_size, stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, bias=conv.bias is not None))
                if k < len(entry):
                    norm_name, norm = build_norm_layer(self.norm_cfg, outs[k], postfix=k + 1)
                    setattr(block, norm_name, norm)
        return layer

    def replace_blocks(self, layer, kwargs):
        """``layer`` (a stage just built from ``kwargs``, before it joins
        ``res_layers``) with ``block_cfg`` blocks in place of the host's
        where ``stage_with_block_cfg`` / ``block_cfg_blocks`` say so."""
        stage = len(self.res_layers)
        if self.block_cfg is None or not self.stage_with_block_cfg[stage]:
            return layer
        cfg = with_host_norm(self.block_cfg, kwargs.get('norm_cfg'))
        cls = unit_class(cfg)
        if self.with_cp:
            if cls is not None and 'with_cp' not in inspect.signature(cls).parameters:
                raise ValueError(f'{type(self).__name__}: with_cp=True, but the block_cfg '
                                 f'class {cls.__name__} takes no with_cp')
            cfg = dict(cfg, with_cp=True)
        out_channels = kwargs['planes'] * self.block.expansion
        count = 1 if self.block_cfg_blocks == 'first' else len(layer)
        for j in range(count):
            # The replaced block's stride and dilation (mmseg's multi_grid /
            # contract_dilation set them per block). ResLayer is an
            # nn.Sequential: the new block takes the old one's index.
            layer[j] = MODELS.build(dict(
                cfg, in_channels=kwargs['inplanes'] if j == 0 else out_channels,
                out_channels=out_channels, stride=layer[j].stride, dilation=layer[j].dilation))
        return layer

    def train(self, mode=True):
        """As mmdet's (frozen stages and ``norm_eval`` stay in eval mode), but
        returns ``self`` like ``nn.Module.train`` so ``.eval()`` chains."""
        super().train(mode)
        return self


@MODELS.register_module()
class ResNetV1d(ResNet):
    """ResNet-D host (deep stem, average-pool downsampling): a drop-in
    replacement for mmdet's ``ResNetV1d`` (keyword arguments only, mmdet
    ResNet's defaults: ``norm_eval=True``, ``stem_channels=base_channels``;
    ``block_conv_cfg`` and ``stem_pool`` as on :class:`ResNet`).

    Source: mmdet 3.3.0 ``ResNetV1d``; He et al., "Bag of Tricks for Image
    Classification with Convolutional Neural Networks", CVPR 2019.
    """

    backbone_examples = (dict(depth=18, base_channels=16, stem_channels=16), )

    def __init__(self, **kwargs):
        super().__init__(deep_stem=True, avg_down=True, **kwargs)


@MODELS.register_module()
class ResNetV1c(ResNet):
    """ResNet-C host (deep stem), the backbone of mmseg's configs.

    mmdet has no ResNetV1c; this mirrors **mmseg**'s ``ResNetV1c`` (mmseg
    1.2.2), whose defaults differ from mmdet's ResNet: ``norm_eval=False``
    (BN statistics train, as mmseg's recipes expect) and
    ``stem_channels=64`` whatever ``base_channels`` is (so mmseg / ImageNet
    v1c checkpoints keep loading into narrow variants). Keyword arguments
    only, as mmseg's; ``block_conv_cfg`` and ``stem_pool`` as on
    :class:`ResNet`.

    The stages are mmseg's ``ResLayer``, so mmseg's ``contract_dilation``
    (the first block of a dilated stage at half the dilation) and
    ``multi_grid`` (per-block dilations of the last stage, one per block)
    build the dilated-stage networks of PSPNet / DeepLab configs as mmseg
    does; at the dilation 1 of UperNet's and FPN's configs they change
    nothing.

    Source: mmseg 1.2.2 ``mmseg/models/backbones/resnet.py``.
    """

    backbone_examples = (
        dict(depth=18, base_channels=16, stem_channels=16),
        # A dilated-stage network (PSPNet / DeepLab): strides 4, 8, 8, 8.
        dict(depth=18, base_channels=16, stem_channels=16, strides=(1, 2, 1, 1),
             dilations=(1, 1, 2, 4), contract_dilation=True, multi_grid=(1, 2)),
    )

    def __init__(self, *, stem_channels=64, norm_eval=False, multi_grid=None,
                 contract_dilation=False, pretrained=None, **kwargs):
        # Attributes mmseg's ResNet sets and mmdet's does not; make_res_layer
        # reads the last two inside the parent's __init__.
        self.pretrained = pretrained
        self.multi_grid = multi_grid
        self.contract_dilation = contract_dilation
        super().__init__(deep_stem=True, avg_down=False, stem_channels=stem_channels,
                         norm_eval=norm_eval, pretrained=pretrained, **kwargs)

    def make_res_layer(self, **kwargs):
        """The host's stage, built by mmseg's ``ResLayer`` (mmdet's has no
        ``multi_grid`` / ``contract_dilation``; otherwise the two build the
        same blocks)."""
        # Imported here so that importing mmext does not import mmseg.
        from mmseg.models.utils import ResLayer as SegResLayer

        # mmseg applies multi_grid to the last stage only; the parent appends
        # each stage to res_layers after building it.
        last = len(self.res_layers) == len(self.stage_blocks) - 1
        layer = SegResLayer(multi_grid=self.multi_grid if last else None,
                            contract_dilation=self.contract_dilation,
                            **self.block_kwargs(kwargs))
        return self.resize_blocks(self.replace_blocks(layer, kwargs))


@MODELS.register_module()
class ResNeXt(ResNet, _ResNeXt):
    """mmdet's ResNeXt (``groups``, ``base_width``) with the host extensions;
    the 3x3 in the ``dcn`` slot receives ``groups`` (SKNet's G).

    A drop-in replacement for mmdet's ``ResNeXt``: ``groups`` and
    ``base_width`` first (positional, as mmdet's), every mmdet ResNet
    argument as a keyword. Like mmdet's, ``zero_init_residual`` leaves the
    blocks' ``norm3`` at 1 (mmdet's identity check skips its ResNeXt block).

    Source: mmdet 3.3.0 ``mmdet/models/backbones/resnext.py``; Xie et al.,
    "Aggregated Residual Transformations for Deep Neural Networks", CVPR 2017.
    """

    arch_settings = {
        50: (XBottleneck, (3, 4, 6, 3)),
        101: (XBottleneck, (3, 4, 23, 3)),
        152: (XBottleneck, (3, 8, 36, 3)),
    }
    backbone_examples = (dict(depth=50, groups=4, base_width=4, base_channels=8,
                              stem_channels=16), )

    def __init__(self, groups=1, base_width=4, **kwargs):
        # What mmdet's ResNeXt.__init__ does (ResNet.__init__ bypasses it).
        self.groups = groups
        self.base_width = base_width
        super().__init__(**kwargs)
