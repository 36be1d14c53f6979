"""Slimmable (US-Net style) convolutions and batch norms: one set of full-width
weights, run at any width multiplier by slicing leading channels.

MutualNet (Yang et al., "MutualNet: Adaptive ConvNet via Mutual Learning from
Network Width and Resolution", ECCV 2020, arXiv 1909.12978; official code
taoyang1122/MutualNet, ``models/slimmable_ops.py`` and ``ComputePostBN.py``,
after Yu & Huang's US-Nets, JiahuiYu/slimmable_networks) trains one network
whose sub-networks are its leading channels:

* a layer of full width ``C`` runs at width ``w`` with
  ``make_divisible(C * w / ratio) * ratio`` output channels
  (:func:`slim_channels`), its weight the slice ``weight[:c_out, :c_in]``; the
  ``ratio`` ties a layer to a reference width (a bottleneck's inner convs use
  ``1 / 4`` of the block output, so the inner width stays exactly a quarter of
  it, as the official ResNet; an inverted residual's expansion uses ``t``);
* the input channels are those of the incoming tensor (its leading channels);
  a depth-wise convolution slices its groups with them;
* batch norms share the affine parameters (sliced) and keep private running
  statistics for each width of ``width_mult_list``; training uses batch
  statistics, as every BN;
* after training, the running statistics of each evaluated (width, resolution)
  are recomputed on a few training batches (:func:`calibrate_bn`).

Hosts (``mmext.ResNet`` family, :class:`SlimmableMobileNetV2`) take
``slimmable=dict(width_mult_list=[...], width_mult=1.0)`` and convert their
``nn.Conv2d`` / BN modules after construction (:func:`make_slimmable`): the
parameter names, the initialisation and the state dict of the plain host are
kept, so a checkpoint of the plain (full-width) model loads. The host's
``out_channels`` stay the full widths; necks and heads built with them read the
leading channels they receive through :func:`slim_inputs`
(:class:`SlimmableFPN`, :class:`SlimmableUPerHead`, :class:`SlimmableFCNHead`).

SyncBN: a host built with ``norm_cfg=dict(type='SyncBN')`` gets
:class:`SlimmableBatchNorm2d` in place of each ``SyncBatchNorm``; it normalises
with the statistics of its own process's batch, without synchronisation across
GPUs (the official MutualNet trains with per-GPU BN too). Widths lie in
``(0, 1]``: 1 is the full network.
"""
import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.models.necks import FPN
from mmdet.models.utils import make_divisible as _tf_make_divisible
from torch.nn.modules.batchnorm import _BatchNorm

from mmext.registry import MODELS


def make_divisible(value, divisor=8, min_value=None):
    """TF-slim's rounding of a channel count, as US-Net / MutualNet use it:
    ``max(min_value, int(value + divisor / 2) // divisor * divisor)``, plus
    ``divisor`` when that falls below ``0.9 * value``.

    mmdet's ``make_divisible`` computes exactly this (at ``min_ratio=0.9``)
    and is reused. ``min_value=None`` means ``divisor`` (TF-slim's default);
    the official ``slimmable_ops.py`` slices with ``min_value=1``, which
    :func:`slim_channels` passes.

    Args:
        value (float): Channel count to round.
        divisor (int): The result is a multiple of it (unless ``min_value``
            is). Default: 8.
        min_value (int, optional): Lower bound. Default: ``divisor``.

    Returns:
        int: The rounded count.
    """
    return _tf_make_divisible(value, divisor, min_value=min_value, min_ratio=0.9)


def check_width_mult(width_mult, where='width_mult'):
    """``width_mult`` as a float in ``(0, 1]``; ValueError naming ``where``
    otherwise."""
    width_mult = float(width_mult)
    if not 0 < width_mult <= 1:
        raise ValueError(f'{where}={width_mult}; a width multiplier is in (0, 1] '
                         '(1 = the full network)')
    return width_mult


def slim_channels(channels, width_mult, ratio=1.0):
    """Active channels of a layer of full width ``channels`` at
    ``width_mult``: ``int(make_divisible(channels * width_mult / ratio,
    min_value=1) * ratio)`` (official ``USConv2d`` / ``USBatchNorm2d``),
    bounded to ``[1, channels]``; exactly ``channels`` at width 1 (also for
    full widths that are not multiples of 8).

    Args:
        channels (int): Full width.
        width_mult (float): In ``(0, 1]``.
        ratio (float): The layer's width over its reference width (see the
            module docstring). Default: 1.

    Returns:
        int: Active channels.
    """
    if width_mult >= 1:
        return channels
    active = int(make_divisible(channels * width_mult / ratio, 8, min_value=1) * ratio)
    return max(1, min(channels, active))


def _width_key(width_mult):
    # Buffer-name suffix of a width: 0.7 -> 'w0_7', 0.85 -> 'w0_85'.
    return 'w' + f'{width_mult:g}'.replace('.', '_')


def _check_width_list(width_mult_list, where='width_mult_list'):
    widths = sorted({round(check_width_mult(w, where), 6) for w in width_mult_list})
    if not widths:
        raise ValueError(f'{where} is empty; give the widths whose BN statistics are kept, '
                         'e.g. [0.7, 0.85, 1.0]')
    return tuple(widths)


class SlimmableConv2d(nn.Conv2d):
    """``nn.Conv2d`` at full width that runs on the leading channels.

    Same arguments and parameter names as ``nn.Conv2d`` (``weight`` of shape
    ``(C_out, C_in / groups, k, k)``), plus keyword-only:

    Args:
        ratio (float): Output width over its reference width; the active
            output channels are ``slim_channels(out_channels, width_mult,
            ratio)``. Default: 1.
        slice_out (bool): Slice the outputs (False: always ``out_channels``,
            e.g. a neck conv that reads backbone features). Default: True.
        lead_in (int, optional): The input is the concatenation of a sliced
            tensor of full width ``lead_in`` and ``in_channels - lead_in``
            unsliced channels (mmseg's PPM bottleneck, FCNHead's
            ``concat_input``): the weight columns are the sliced tensor's
            leading ones and all the others. Default: None (the whole input is
            one sliced tensor).
        width_mult (float): Active width, in ``(0, 1]``. Default: 1.

    Shapes: input ``(N, c_in, H, W)`` with ``c_in <= in_channels`` (the
    weight's leading ``c_in`` input columns are used); output ``(N, c_out,
    H', W')`` with ``c_out`` as above (a depth-wise conv: ``c_out = c_in``,
    ``groups = c_in``), ``H', W'`` as ``nn.Conv2d``.

    Raises:
        ValueError: ``groups`` other than 1 or depth-wise (``groups ==
            in_channels == out_channels``): slicing a grouped conv is not
            defined; an input wider than ``in_channels``.

    Source: ``USConv2d`` of taoyang1122/MutualNet ``models/slimmable_ops.py``.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, padding_mode='zeros', *, ratio=1.0,
                 slice_out=True, lead_in=None, width_mult=1.0):
        if groups != 1 and not groups == in_channels == out_channels:
            raise ValueError(f'SlimmableConv2d: groups={groups} with {in_channels} -> '
                             f'{out_channels} channels; only plain (groups=1) and depth-wise '
                             'convolutions can be sliced')
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=padding, dilation=dilation, groups=groups, bias=bias,
                         padding_mode=padding_mode)
        self.depthwise = groups > 1
        self.ratio = ratio
        self.slice_out = slice_out
        self.lead_in = lead_in
        self.width_mult = check_width_mult(width_mult)

    @classmethod
    def from_conv(cls, conv, **kwargs):
        """A :class:`SlimmableConv2d` holding ``conv``'s own parameters (the
        same ``Parameter`` objects: ``requires_grad`` and optimizer state
        carry over) and training flag; ``kwargs`` are the keyword-only
        arguments above."""
        with torch.device('meta'):
            new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                      conv.padding, conv.dilation, conv.groups, conv.bias is not None,
                      conv.padding_mode, **kwargs)
        new.weight = conv.weight
        new.bias = conv.bias
        new.train(conv.training)
        return new

    def active_out_channels(self, in_channels=None):
        """Output channels at the active width (``in_channels`` for a
        depth-wise conv)."""
        if self.depthwise:
            return self.out_channels if in_channels is None else in_channels
        if not self.slice_out:
            return self.out_channels
        return slim_channels(self.out_channels, self.width_mult, self.ratio)

    def forward(self, x):
        c_in = x.shape[1]
        if c_in > self.in_channels:
            raise ValueError(f'SlimmableConv2d: input of {c_in} channels for a conv of '
                             f'{self.in_channels} input channels')
        groups, weight, bias = self.groups, self.weight, self.bias
        if self.depthwise:
            groups, weight = c_in, weight[:c_in]
            bias = None if bias is None else bias[:c_in]
        else:
            c_out = self.active_out_channels()
            if self.lead_in is None:
                weight = weight[:c_out, :c_in]
            else:
                lead = c_in - (self.in_channels - self.lead_in)
                weight = torch.cat([weight[:c_out, :lead], weight[:c_out, self.lead_in:]], 1)
            bias = None if bias is None else bias[:c_out]
        if self.padding_mode != 'zeros':
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        else:
            padding = self.padding
        return F.conv2d(x, weight, bias, self.stride, padding, self.dilation, groups)

    def extra_repr(self):
        return (super().extra_repr() + f', ratio={self.ratio}, slice_out={self.slice_out}, '
                f'width_mult={self.width_mult}')


class SlimmableBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d with shared affine parameters and running statistics per
    width.

    The state dict of the ``nn.BatchNorm2d`` it replaces (``weight``,
    ``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``, all
    of ``num_features`` entries) plus, for each width ``w < 1`` of
    ``width_mult_list``, ``running_mean_w0_7`` / ``running_var_w0_7`` /
    ``num_batches_tracked_w0_7`` (for ``w = 0.7``; full length, the leading
    ``c`` entries used). Width 1 uses the plain buffers, so a plain
    checkpoint loads; loaded without the per-width buffers (a plain model's
    checkpoint), each width starts from the full-width statistics.

    At width ``w`` the input ``(N, c, H, W)`` (``c <= num_features``, the
    layer's active channels) is normalised with ``weight[:c]`` / ``bias[:c]``
    and, in eval mode, the leading ``c`` statistics of ``w``; in training with
    the batch's statistics, updating those of ``w`` (with ``momentum``) when
    ``w`` is in the list. A width outside the list trains on batch statistics
    without running ones and evaluates only after :func:`calibrate_bn` at it
    (statistics kept in memory, not in the state dict).

    Args:
        num_features (int): Full width ``C``.
        eps, momentum, affine: As ``nn.BatchNorm2d`` (running statistics are
            always tracked).
        width_mult_list (Sequence[float]): Widths in ``(0, 1]`` with their own
            statistics. Default: ``(1.0, )``.
        width_mult (float): Active width. Default: 1.

    Raises:
        ValueError: a width outside ``(0, 1]``; an input wider than
            ``num_features``.
        RuntimeError: eval mode at a width with no statistics.

    Source: ``USBatchNorm2d`` of taoyang1122/MutualNet
    ``models/slimmable_ops.py`` (there one ``nn.BatchNorm2d`` per width).
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, *,
                 width_mult_list=(1.0, ), width_mult=1.0):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine)
        self.width_mult_list = _check_width_list(width_mult_list)
        self.width_mult = check_width_mult(width_mult)
        for w in self.width_mult_list:
            if w < 1:
                key = _width_key(w)
                self.register_buffer(f'running_mean_{key}', torch.zeros(num_features))
                self.register_buffer(f'running_var_{key}', torch.ones(num_features))
                self.register_buffer(f'num_batches_tracked_{key}',
                                     torch.tensor(0, dtype=torch.long))
        # Widths outside the list, calibrated by calibrate_bn (not saved).
        self._calibrated = {}

    @classmethod
    def from_bn(cls, bn, width_mult_list, width_mult=1.0):
        """A :class:`SlimmableBatchNorm2d` holding ``bn``'s parameters,
        statistics (copied to every width) and training flag."""
        new = cls(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                  width_mult_list=width_mult_list, width_mult=width_mult)
        if bn.affine:
            new.weight = bn.weight
            new.bias = bn.bias
        if bn.track_running_stats:
            for w in new.width_mult_list:
                mean, var, count = new.width_stats(w)
                mean.copy_(bn.running_mean)
                var.copy_(bn.running_var)
                count.copy_(bn.num_batches_tracked)
        new.train(bn.training)
        return new

    def width_stats(self, width_mult):
        """``(running_mean, running_var, num_batches_tracked)`` of
        ``width_mult`` (full-length tensors), or None when it has none."""
        w = round(width_mult, 6)
        if w >= 1:
            return self.running_mean, self.running_var, self.num_batches_tracked
        if w in self.width_mult_list:
            key = _width_key(w)
            return (getattr(self, f'running_mean_{key}'), getattr(self, f'running_var_{key}'),
                    getattr(self, f'num_batches_tracked_{key}'))
        return self._calibrated.get(w)

    def reset_width_stats(self, width_mult):
        """Zero means, unit variances and a zero count for ``width_mult``
        (created in memory for a width outside the list); returns them."""
        stats = self.width_stats(width_mult)
        if stats is None:
            p = self.weight if self.affine else self.running_mean
            stats = (torch.zeros(self.num_features, device=p.device),
                     torch.ones(self.num_features, device=p.device),
                     torch.tensor(0, dtype=torch.long, device=p.device))
            self._calibrated[round(width_mult, 6)] = stats
        mean, var, count = stats
        mean.zero_()
        var.fill_(1)
        count.zero_()
        return stats

    def forward(self, x):
        c = x.shape[1]
        if c > self.num_features:
            raise ValueError(f'SlimmableBatchNorm2d: input of {c} channels for a norm of '
                             f'{self.num_features}')
        weight = self.weight[:c] if self.affine else None
        bias = self.bias[:c] if self.affine else None
        stats = self.width_stats(self.width_mult)
        if self.training:
            if stats is None:
                return F.batch_norm(x, None, None, weight, bias, True, 0.0, self.eps)
            mean, var, count = stats
            count.add_(1)
            momentum = 1.0 / float(count) if self.momentum is None else self.momentum
            # Views of the leading entries: batch_norm updates them in place.
            return F.batch_norm(x, mean[:c], var[:c], weight, bias, True, momentum, self.eps)
        if stats is None:
            raise RuntimeError(
                f'SlimmableBatchNorm2d: no BN statistics for width_mult={self.width_mult} '
                f'(kept: {list(self.width_mult_list)}); add it to slimmable.width_mult_list '
                'or run mmext calibrate_bn at it')
        mean, var, _ = stats
        return F.batch_norm(x, mean[:c], var[:c], weight, bias, False, 0.0, self.eps)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # A plain BN's checkpoint: every width starts from the full-width
        # statistics (what the conversion of a built model does too).
        for w in self.width_mult_list:
            if w >= 1:
                continue
            key = _width_key(w)
            for name in ('running_mean', 'running_var', 'num_batches_tracked'):
                if prefix + f'{name}_{key}' not in state_dict and prefix + name in state_dict:
                    state_dict[prefix + f'{name}_{key}'] = state_dict[prefix + name]
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def extra_repr(self):
        return (super().extra_repr() + f', width_mult_list={list(self.width_mult_list)}, '
                f'width_mult={self.width_mult}')


SLIMMABLE_TYPES = (SlimmableConv2d, SlimmableBatchNorm2d)
# BN classes a host's norm_cfg builds that convert: 'BN' and 'SyncBN' (mmengine's
# subclass of torch's SyncBatchNorm); mmcv's 'MMSyncBN' is not one of them.
_CONVERTIBLE_BN = (nn.BatchNorm2d, nn.SyncBatchNorm)


def _set_child(root, name, module):
    parent_name, _, attr = name.rpartition('.')
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, module)


SLIMMABLE_KEYS = ('width_mult_list', 'width_mult')


def check_slimmable(host, slimmable):
    """A host's ``slimmable`` option as ``dict(width_mult_list=(...),
    width_mult=w)``: the list sorted, with 1 added (the full network always
    has its statistics: the plain BN buffers); ``width_mult`` defaults to 1.

    Raises:
        ValueError: not a dict, unknown keys, no ``width_mult_list``, a
            width outside ``(0, 1]`` (one line naming ``host`` and the key).
    """
    if not isinstance(slimmable, dict) or 'width_mult_list' not in slimmable \
            or set(slimmable) - set(SLIMMABLE_KEYS):
        raise ValueError(f'{host}: slimmable={slimmable!r}; expected '
                         'dict(width_mult_list=[...], width_mult=1.0)')
    widths = _check_width_list(list(slimmable['width_mult_list']) + [1.0],
                               f'{host}: slimmable.width_mult_list')
    width = check_width_mult(slimmable.get('width_mult', 1.0), f'{host}: slimmable.width_mult')
    return dict(width_mult_list=widths, width_mult=width)


def make_slimmable(host, module, slimmable, ratio_of=None, slice_out_of=None):
    """Convert every ``nn.Conv2d`` / BN of ``module`` (in place) to
    :class:`SlimmableConv2d` / :class:`SlimmableBatchNorm2d`.

    Args:
        host (str): Name for the errors (the host class).
        module (nn.Module): Converted in place (not itself a conv / BN).
        slimmable (dict): The host's option (see :func:`check_slimmable`).
        ratio_of (callable, optional): ``ratio_of(name, conv) -> float``, the
            conv's ratio (see :func:`slim_channels`). Default: 1.
        slice_out_of (callable, optional): ``slice_out_of(name, conv) ->
            bool``. Default: True.

    Returns:
        dict: The resolved option (:func:`check_slimmable`).

    Raises:
        ValueError: as :func:`check_slimmable`; (one line, naming the module
            and ``slimmable``) a module with parameters of another type (a
            plugin or conv whose slicing is not defined: ODConv, GroupNorm,
            ...), or a grouped conv.
    """
    slimmable = check_slimmable(host, slimmable)
    widths, width_mult = slimmable['width_mult_list'], slimmable['width_mult']
    for name, child in list(module.named_modules()):
        if not name:
            continue
        if type(child) is nn.Conv2d:
            if child.groups != 1 and not child.groups == child.in_channels == child.out_channels:
                raise ValueError(f'{host}: slimmable is not defined for {name} (Conv2d with '
                                 f'groups={child.groups}); remove slimmable or use a host '
                                 'without grouped convolutions')
            ratio = ratio_of(name, child) if ratio_of else 1.0
            slice_out = slice_out_of(name, child) if slice_out_of else True
            _set_child(module, name, SlimmableConv2d.from_conv(
                child, ratio=ratio, slice_out=slice_out, width_mult=width_mult))
        elif isinstance(child, _CONVERTIBLE_BN) and not isinstance(child, SlimmableBatchNorm2d):
            _set_child(module, name,
                       SlimmableBatchNorm2d.from_bn(child, widths, width_mult=width_mult))
        elif any(True for _ in child.parameters(recurse=False)) \
                and not isinstance(child, SLIMMABLE_TYPES):
            raise ValueError(f'{host}: slimmable is not defined for {name} '
                             f'({type(child).__name__}); remove slimmable or that module')
    return slimmable


def slimmable_modules(model):
    """The :class:`SlimmableConv2d` / :class:`SlimmableBatchNorm2d` modules of
    ``model``."""
    return [m for m in model.modules() if isinstance(m, SLIMMABLE_TYPES)]


def set_width_mult(model, width_mult):
    """Run every slimmable module of ``model`` at ``width_mult``.

    Args:
        model (nn.Module): Holds slimmable modules (a slimmable host or a
            detector / segmentor built with one).
        width_mult (float): In ``(0, 1]``.

    Returns:
        float: The previous width (of the first slimmable module).

    Raises:
        ValueError: ``width_mult`` outside ``(0, 1]``; ``model`` has no
            slimmable module.
    """
    width_mult = check_width_mult(width_mult)
    modules = [m for m in slimmable_modules(model) if not getattr(m, 'fixed_width', False)]
    if not modules:
        raise ValueError(f'{type(model).__name__} has no slimmable module: set the backbone\'s '
                         'slimmable=dict(width_mult_list=[...])')
    previous = modules[0].width_mult
    for m in modules:
        m.width_mult = width_mult
    for m in model.modules():
        if isinstance(getattr(m, 'slimmable', None), dict):
            m.slimmable = dict(m.slimmable, width_mult=width_mult)
    return previous


@contextlib.contextmanager
def width_mult(model, width_mult):  # noqa: F811 (the context manager's name is the option's)
    """Context manager: ``model`` at ``width_mult`` inside, at its previous
    width after (see :func:`set_width_mult`)."""
    previous = set_width_mult(model, width_mult)
    try:
        yield model
    finally:
        set_width_mult(model, previous)


def width_mult_list_of(model):
    """The ``width_mult_list`` (sorted tuple) of ``model``'s slimmable BNs;
    ValueError when it has none."""
    for m in model.modules():
        if isinstance(m, SlimmableBatchNorm2d):
            return m.width_mult_list
    raise ValueError(f'{type(model).__name__} has no slimmable BN: set the backbone\'s '
                     'slimmable=dict(width_mult_list=[...])')


def current_width_mult(model):
    """The active width of ``model``'s first slimmable module."""
    for m in slimmable_modules(model):
        return m.width_mult
    raise ValueError(f'{type(model).__name__} has no slimmable module')


def slim_inputs(module, lead_in=None):
    """Make the convs of ``module`` read the leading channels of a narrower
    input; their outputs keep full width. The neck / head rule: applied to
    the convs that read backbone features.

    Args:
        module (nn.Module): An ``nn.Conv2d``, or a module whose ``nn.Conv2d``
            descendants are all converted (e.g. an FPN's ``lateral_convs``).
        lead_in (int, optional): See :class:`SlimmableConv2d` (the input is a
            sliced tensor of full width ``lead_in`` concatenated with
            unsliced channels).

    Returns:
        nn.Module: ``module`` converted in place, or the new conv when
        ``module`` is itself an ``nn.Conv2d``.
    """
    def convert(conv):
        new = SlimmableConv2d.from_conv(conv, slice_out=False, lead_in=lead_in)
        # The width of its input is set by the backbone, not by set_width_mult.
        new.fixed_width = True
        return new

    if type(module) is nn.Conv2d:
        return convert(module)
    for name, child in list(module.named_modules()):
        if name and type(child) is nn.Conv2d:
            _set_child(module, name, convert(child))
    return module


@MODELS.register_module()
class SlimmableFPN(FPN):
    """mmdet's FPN reading the leading channels of a slimmable backbone's
    features: the lateral 1x1 convs and, with ``add_extra_convs='on_input'``,
    the first extra conv (the convs that read backbone features) slice their
    input channels; all outputs keep ``out_channels``. Same arguments, modules
    and state dict as ``mmdet.FPN``, whose checkpoints load.

    Shapes: inputs ``(N, c_i, H_i, W_i)`` with ``c_i <= in_channels[i]``;
    outputs as mmdet's FPN.

    Source: mmdet 3.3.0 ``FPN``; the rule is the official MutualNet
    classifier's (``USLinear(us=[True, False])``: input sliced, output full).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        slim_inputs(self.lateral_convs)
        if self.add_extra_convs == 'on_input' and len(self.fpn_convs) > len(self.lateral_convs):
            slim_inputs(self.fpn_convs[len(self.lateral_convs)])


_SEG_HEADS = {}


def _seg_head(name):
    """The slimmable subclass of mmseg's ``UPerHead`` / ``FCNHead``, made on
    first use: mmseg is imported here so that importing mmext does not
    import it."""
    if name not in _SEG_HEADS:
        from mmseg.models.decode_heads import FCNHead, UPerHead

        class _UPerHead(UPerHead):

            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                slim_inputs(self.lateral_convs)
                slim_inputs(self.psp_modules)
                slim_inputs(self.bottleneck, lead_in=self.in_channels[-1])

        class _FCNHead(FCNHead):

            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                if len(self.convs):
                    slim_inputs(self.convs[0])
                if self.concat_input:
                    slim_inputs(self.conv_cat, lead_in=self.in_channels)

        for cls, base in ((_UPerHead, 'SlimmableUPerHead'), (_FCNHead, 'SlimmableFCNHead')):
            cls.__name__ = cls.__qualname__ = base
            _SEG_HEADS[base] = cls
    return _SEG_HEADS[name]


@MODELS.register_module()
class SlimmableUPerHead:
    """mmseg's UPerHead reading the leading channels of a slimmable
    backbone's features: the lateral convs and the PPM convs slice their
    inputs; the PPM bottleneck (the last feature concatenated with the PPM
    outputs) uses the weight columns of the feature's leading channels and
    of every PPM channel. Arguments, outputs, modules and state dict (a
    ``UPerHead`` checkpoint loads) are mmseg's ``UPerHead``'s; building it
    gives an instance of a subclass of mmseg's class (made on first use, so
    that importing mmext does not import mmseg).

    Shapes: inputs ``(N, c_i, H_i, W_i)`` with ``c_i <= in_channels[i]``;
    output ``(N, num_classes, H_0, W_0)`` as mmseg's.

    Source: mmseg 1.2.2 ``UPerHead``."""

    def __new__(cls, *args, **kwargs):
        return _seg_head('SlimmableUPerHead')(*args, **kwargs)


@MODELS.register_module()
class SlimmableFCNHead:
    """mmseg's FCNHead (UperNet's auxiliary head) reading the leading
    channels of a slimmable backbone's feature: its first conv slices the
    input; with ``concat_input`` the final conv uses the columns of the
    feature's leading channels and of every conv channel. Arguments,
    outputs, modules and state dict as mmseg's ``FCNHead``; built as
    :class:`SlimmableUPerHead` is.

    Source: mmseg 1.2.2 ``FCNHead``."""

    def __new__(cls, *args, **kwargs):
        return _seg_head('SlimmableFCNHead')(*args, **kwargs)


def _resize(inputs, resize):
    if resize is None:
        return inputs
    if isinstance(resize, (int, float)) and not isinstance(resize, bool):
        size = tuple(max(1, int(s * resize + 0.5)) for s in inputs.shape[-2:])
    else:
        size = tuple(int(s) for s in resize)
    if size == tuple(inputs.shape[-2:]):
        return inputs
    return F.interpolate(inputs, size=size, mode='bilinear', align_corners=True)


def run_batch(model, batch, resize=None):
    """One forward of ``model`` on ``batch`` for its BN statistics: a tensor
    ``(N, C, H, W)`` goes to ``model(x)``; a dataloader batch (dict with
    ``inputs`` / ``data_samples``) through ``model.data_preprocessor`` and
    ``model(inputs, data_samples, mode='tensor')``. ``resize`` (a scale
    factor or ``(H, W)``) resizes the input tensor bilinearly with
    ``align_corners=True`` (the official MutualNet resize); ``mode='tensor'``
    reads no annotation, so only the tensor is resized."""
    if isinstance(batch, torch.Tensor):
        return model(_resize(batch, resize))
    # training=True: the batches are training batches (mmseg pads random
    # crops of different sizes to one only in training mode).
    data = model.data_preprocessor(batch, True)
    return model(_resize(data['inputs'], resize), data['data_samples'], mode='tensor')


@torch.no_grad()
def calibrate_bn(model, data_batches, width_mult=None, resize=None, num_batches=8,
                 plain_bn=True):
    """Recompute BN running statistics at one width (and input size), as the
    official ``ComputePostBN.py``: the statistics are reset, then every BN
    normalises ``num_batches`` batches with batch statistics while its
    running ones become their cumulative average (momentum ``1 / (t + 1)`` at
    batch ``t``: the mean of the batch means, and of the unbiased batch
    variances). The model runs in eval mode except its BNs (no dropout /
    drop path), without gradients; training flags, momenta and the width are
    restored after.

    Args:
        model (nn.Module): A slimmable host, or a detector / segmentor with
            a ``data_preprocessor``.
        data_batches (Iterable): Tensors ``(N, C, H, W)`` or dataloader
            batches (see :func:`run_batch`); the first ``num_batches`` are
            used (the official loop runs one more than its ``num_batch``).
        width_mult (float, optional): Width to calibrate; None: the model's
            current one. Only its statistics change in the slimmable BNs.
        resize (float | tuple[int, int], optional): Scale factor of the
            input or its ``(H, W)``. Default: the batches' size.
        num_batches (int): Default: 8 (the official default).
        plain_bn (bool): Also recompute the model's non-slimmable BNs (e.g.
            a decode head's), as the official code resets every BN; their
            statistics are shared by all widths. Default: True.

    Returns:
        int: Batches used.

    Raises:
        ValueError: ``num_batches < 1``, no batch, or no slimmable BN and
            ``plain_bn=False``.
    """
    if num_batches < 1:
        raise ValueError(f'calibrate_bn: num_batches={num_batches}; give at least 1')
    slim = [m for m in model.modules() if isinstance(m, SlimmableBatchNorm2d)]
    plain = [m for m in model.modules()
             if isinstance(m, _BatchNorm) and not isinstance(m, SlimmableBatchNorm2d)
             and m.track_running_stats] if plain_bn else []
    if not slim and not plain:
        raise ValueError(f'calibrate_bn: {type(model).__name__} has no BN to calibrate')
    previous = None
    if width_mult is not None and slim:
        previous = set_width_mult(model, width_mult)
    flags = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in slim + plain}
    used = 0
    try:
        model.eval()
        for m in slim:
            m.reset_width_stats(m.width_mult)
        for m in plain:
            m.reset_running_stats()
        for m in slim + plain:
            m.train()
        for batch in data_batches:
            if used == num_batches:
                break
            for m in slim + plain:
                m.momentum = 1.0 / (used + 1)
            run_batch(model, batch, resize)
            used += 1
    finally:
        for m, momentum in momenta.items():
            m.momentum = momentum
        for m, flag in flags.items():
            m.training = flag
        if previous is not None:
            set_width_mult(model, previous)
    if not used:
        raise ValueError('calibrate_bn: data_batches gave no batch')
    return used

