"""Norms inside attention / dynamic-convolution units.

Two rules every unit of mmext follows (docs/designs/README.md, "Norms inside
the units"):

* **The host's norm.** A unit class lists in ``host_norm_args`` the
  constructor arguments that take the norm of the network it sits in (e.g.
  ``ODConv.host_norm_args = ('attn_norm_cfg',)``). The mmext ResNet hosts pass
  their ``norm_cfg`` (SyncBN in mmseg configs) to those arguments of every
  ``block_conv_cfg`` / ``dcn`` / plugin cfg, unless the cfg sets the argument
  itself (:func:`with_host_norm`). Built on its own, a unit uses BN, the
  official behaviour.
* **One value per channel.** A BatchNorm in training mode needs more than one
  value per channel. A norm over a globally pooled ``(N, C, 1, 1)`` descriptor
  sees exactly ``N``, so one image per device fails. Units call
  :func:`check_norm_input` right before such a norm; it raises a one-line
  :class:`~mmext.utils.errors.MMExtError` that names the unit and the fixes,
  instead of torch's ``ValueError`` from deep inside the forward.
"""
import sys
from functools import partial

import torch
import torch.distributed as dist
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmengine.registry import MODELS as ROOT_MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from mmext.utils.errors import MMExtError

#: Default of an attention norm argument that follows the unit's ``norm_cfg``.
SAME_AS_NORM_CFG = 'norm_cfg'

#: The words of the error :func:`check_norm_input` raises (``python -m mmext
#: explain`` matches them).
ONE_VALUE_PHRASE = 'sees one value per channel in training'


def check_pooled_norm_cfg(norm_cfg, channels, unit, arg):
    """Refuse a GroupNorm that cannot normalise a pooled ``(N, channels, 1, 1)``
    descriptor: groups that do not divide ``channels``, or one channel per
    group (every value would be normalised to 0, a constant attention).

    Raises:
        MMExtError: With the fix (``<arg>=dict(type='GN', num_groups=1)``).
    """
    if not norm_cfg or norm_cfg.get('type') not in ('GN', nn.GroupNorm):
        return
    groups = norm_cfg.get('num_groups', 1)
    if channels % groups or (channels // groups == 1 and channels > 0):
        raise MMExtError(
            f'{unit}: GroupNorm with num_groups={groups} cannot normalise the pooled '
            f'{channels}-channel descriptor ({arg}; each group needs >= 2 of its channels); '
            f"set {arg}=dict(type='GN', num_groups=1) or another divisor of {channels}")


def build_unit_norm(norm_cfg, channels, unit='', arg='norm_cfg'):
    """A norm layer of ``channels`` features for a pooled descriptor,
    ``nn.Identity`` for ``None``.

    Args:
        norm_cfg (dict | None): mmcv norm config (``BN``, ``SyncBN``, ``GN``,
            ...) or None for no norm.
        channels (int): Number of channels.
        unit (str): The unit's name, for the error message.
        arg (str): The constructor argument that sets this norm.

    Returns:
        nn.Module: The norm layer (the identity for ``None``).

    Raises:
        MMExtError: See :func:`check_pooled_norm_cfg`.
    """
    if norm_cfg is None:
        return nn.Identity()
    check_pooled_norm_cfg(norm_cfg, channels, unit, arg)
    return build_norm_layer(norm_cfg, channels)[1]


def resolve_norm_cfg(cfg, norm_cfg):
    """``norm_cfg`` where ``cfg`` is :data:`SAME_AS_NORM_CFG`, else ``cfg``."""
    return norm_cfg if cfg == SAME_AS_NORM_CFG else cfg


def unit_class(cfg):
    """The class a layer cfg builds, resolved as mmcv's ``build_conv_layer`` /
    ``build_plugin_layer`` resolve it (scoped names such as ``'mmext.ODConv'``,
    the current default scope otherwise); None if it cannot be resolved (the
    build itself then reports the unknown type)."""
    layer_type = cfg.get('type')
    if not isinstance(layer_type, str):
        return layer_type
    try:
        with ROOT_MODELS.switch_scope_and_registry(None) as registry:
            return registry.get(layer_type)
    except Exception:  # resolution is best effort; the real build raises
        return None


def with_host_norm(cfg, norm_cfg):
    """A copy of a unit cfg in which every argument that the unit's class
    lists in ``host_norm_args`` and the cfg leaves unset is ``norm_cfg``.

    A class may define ``adapt_host_norm(arg, norm_cfg)`` (a classmethod) to
    keep an official detail of its own norm, e.g. CBAM's BN momentum.

    Args:
        cfg (dict | None): ``block_conv_cfg``, ``dcn`` or a plugin's ``cfg``.
        norm_cfg (dict): The host's norm config.

    Returns:
        dict | None: The cfg to build (``cfg`` itself if nothing changes).
    """
    if cfg is None or norm_cfg is None:
        return cfg
    cls = unit_class(cfg)
    args = [a for a in getattr(cls, 'host_norm_args', ()) if a not in cfg]
    if not args:
        return cfg
    cfg = cfg.copy()
    adapt = getattr(cls, 'adapt_host_norm', None)
    for arg in args:
        cfg[arg] = adapt(arg, norm_cfg) if adapt else dict(norm_cfg)
    return cfg


def _pools_across_devices(norm):
    # SyncBN in a process group of several ranks gathers the statistics of
    # every rank, so one sample per device is enough.
    if not isinstance(norm, nn.SyncBatchNorm):
        return False
    if not (dist.is_available() and dist.is_initialized()):
        return False
    return dist.get_world_size(norm.process_group or dist.group.WORLD) > 1


def _qualified_name(module):
    """``module``'s name in the outermost module running a forward on the
    stack (e.g. ``backbone.layer1.0.conv2``); '' if not found. Only called on
    the error path, so walking the frames costs nothing in training."""
    frame, root = sys._getframe(2), None
    while frame is not None:
        candidate = frame.f_locals.get('self')
        if isinstance(candidate, nn.Module):
            root = candidate
        frame = frame.f_back
    if root is None:
        return ''
    for name, m in root.named_modules():
        if m is module:
            return name
    return ''


def norm_label(norm):
    """How messages name a norm: its class, except mmengine's ``_BatchNormXd``
    (what the tools turn SyncBN into for a single-process CPU run)."""
    name = type(norm).__name__
    return 'BatchNorm (SyncBN converted for this non-distributed run)' \
        if name == '_BatchNormXd' else name


def one_value_per_channel(norm, x):
    """True if BatchNorm ``norm`` would fail on ``x``: it uses batch statistics
    (training, or no running statistics) and sees one value per channel
    (``x.numel() == x.size(1)``: batch 1 and a 1x1 map, or ``(1, C)``, on this
    device), and it is not a SyncBN pooling several ranks."""
    if not isinstance(norm, _BatchNorm) or x.dim() < 2 or x.numel() != x.size(1):
        return False
    batch_stats = norm.training or (norm.running_mean is None and norm.running_var is None)
    return batch_stats and not _pools_across_devices(norm)


def _shape_words(x):
    size = 'x'.join(str(s) for s in x.shape[2:]) or '1'
    return f'batch {x.size(0)} on a {size} map on this device'


#: The fixes every one-value message lists (the shared check tests for them).
DEVICE_FIXES = 'train with >= 2 images per device, SyncBN across >= 2 GPUs'


def check_norm_input(norm, x, owner, arg, unit=None):
    """Raise the one-line mmext error if ``norm`` cannot normalise ``x`` in
    training: a BatchNorm (BN, SyncBN without other ranks, mmengine's
    ``_BatchNormXd``) that uses batch statistics and sees one value per
    channel (``x.numel() == x.size(1)``: batch 1 and a 1x1 map on this
    device). Other norms, eval mode, ``norm_eval`` and SyncBN across several
    ranks pass.

    Args:
        norm (nn.Module): The norm about to run on ``x`` (any module).
        x (Tensor): Its input, ``(N, C, ...)``, or a tensor with the same
            batch and spatial extent.
        owner (nn.Module): The module to name in the message.
        arg (str): The constructor argument that sets this norm.
        unit (str, optional): The unit's name for the message. Defaults to
            the class name of ``owner``.

    Raises:
        MMExtError: ``<unit> '<name>': <Norm> (<arg>) sees one value per
            channel in training ...; <the fixes>``.
    """
    if not one_value_per_channel(norm, x):
        return
    name = _qualified_name(owner)
    where = f" '{name}'" if name else ''
    raise MMExtError(
        f'{unit or type(owner).__name__}{where}: {norm_label(norm)} ({arg}) '
        f'{ONE_VALUE_PHRASE} ({_shape_words(x)}, e.g. a pooled descriptor); {DEVICE_FIXES}, '
        f"{arg}=dict(type='GN', num_groups=1) or {arg}=None in the unit's cfg "
        '(block_conv_cfg / dcn / block_cfg / stem_cfg / the plugin cfg), or norm_eval=True')


def _guard_hook(name, norm, args):
    x = args[0] if args else None
    if isinstance(x, torch.Tensor) and one_value_per_channel(norm, x):
        # The top-level module of a detector / segmentor (backbone, neck,
        # decode_head, roi_head, ...) is where a config sets its norm_cfg.
        top = name.split('.')[0]
        raise MMExtError(
            f"'{name}': {norm_label(norm)} (norm_cfg) {ONE_VALUE_PHRASE} ({_shape_words(x)}, "
            f'e.g. after a global pooling); {DEVICE_FIXES}, a norm without batch statistics '
            f"there (model.{top}.norm_cfg=dict(type='GN', num_groups=32), num_groups=1 "
            'for few channels), or norm_eval=True where the module offers it')


def guard_batch_norms(model):
    """Make every BatchNorm of ``model`` that would fail on one value per
    channel in training raise the one-line mmext error naming it, instead of
    torch's ``ValueError``: the norms of the units check their input
    themselves (:func:`check_norm_input`), this covers the rest of a
    detector or segmentor (e.g. the 1x1 pooling branch of mmseg's UPerHead).

    Args:
        model (nn.Module): The model (a DDP wrapper's ``module`` is used).

    Returns:
        list: The forward pre-hook handles (``handle.remove()`` undoes).
    """
    model = getattr(model, 'module', model)
    return [m.register_forward_pre_hook(partial(_guard_hook, name))
            for name, m in model.named_modules() if isinstance(m, _BatchNorm)]
