"""What every mmext multi-scale backbone shares.

The ResNet family gets ``frozen_stages``, ``norm_eval`` and ``with_cp`` from
mmdet's ResNet; the designs written from scratch (VAN, MogaNet, HorNet, MPViT,
HAT-Net, FCViT) get them here, once, together with the two things their
official code never had in one place:

* loading an official classification checkpoint through
  ``init_cfg=dict(type='Pretrained', checkpoint=...)``: the file's layout is
  recognised (``state_dict`` / ``model`` / bare dict, ``module.`` prefix,
  official or mmext key names), converted on the fly and loaded with a report
  of what did not fit, instead of mmengine's silent partial load;
* inputs of any size: :func:`pad_to_multiple` / :func:`crop_to` for designs
  whose windows or filters need a multiple of some size.

A subclass describes itself with three things: :meth:`stage_modules` (what
``frozen_stages`` freezes), :meth:`convert_official` (official key names to
its own) and, where a weight's shape depends on the runtime configuration,
:meth:`adapt_state_dict`.
"""
import copy
import math
import re
from collections import defaultdict

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmengine.logging import MMLogger, print_log
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from mmext.utils.checkpoint import read_state_dict
from mmext.utils.errors import MMExtError


def pad_to_multiple(x, multiple):
    """Zero-pad the bottom/right of an ``(N, C, H, W)`` map to multiples of
    ``multiple`` (an int or ``(mh, mw)``).

    Returns:
        tuple: ``(padded map, (H, W))``, the original size for :func:`crop_to`.
    """
    mh, mw = (multiple, multiple) if isinstance(multiple, int) else multiple
    h, w = x.shape[-2:]
    ph, pw = (-h) % mh, (-w) % mw
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))
    return x, (h, w)


def crop_to(x, size):
    """Undo :func:`pad_to_multiple` (``size`` is the original ``(H, W)``)."""
    h, w = size
    if x.shape[-2] == h and x.shape[-1] == w:
        return x
    return x[..., :h, :w]


def downsampled_size(size, stride):
    """Spatial size of a stride-``stride`` map of a ``size`` input, as every
    'same'-padded strided convolution chain gives it: ``ceil(H / stride)``."""
    return tuple(math.ceil(s / stride) for s in size)


def checkpoint_call(module, *args, with_cp=False):
    """``module(*args)``, through activation checkpointing when ``with_cp``
    and gradients are being recorded (checkpointing in eval or under
    ``no_grad`` would only cost time)."""
    if with_cp and torch.is_grad_enabled() and any(
            isinstance(a, torch.Tensor) and a.requires_grad for a in args):
        return cp.checkpoint(module, *args, use_reentrant=False)
    return module(*args)


def _preview(keys, n=8):
    keys = sorted(keys)
    more = f' (+{len(keys) - n} more)' if len(keys) > n else ''
    return ', '.join(keys[:n]) + more


class DenseBackbone(BaseModule):
    """Base of mmext's multi-scale backbones.

    Args:
        out_indices (Sequence[int]): Stages (0-based) whose outputs are returned.
        frozen_stages (int): The first ``frozen_stages`` stages (each with its
            patch embedding / downsampling and its output norm) are frozen:
            no gradient, eval mode. ``-1`` or ``0`` freezes nothing.
        norm_eval (bool): Keep every BatchNorm in eval mode while training
            (frozen statistics, the detection fine-tuning convention).
        with_cp (bool): Activation checkpointing per block.
        init_cfg (dict | list[dict], optional): ``None`` takes
            :attr:`default_init_cfg`; ``dict(type='Pretrained',
            checkpoint=..., prefix=None, weights_only=True)`` first applies
            the default initialisation and then loads the checkpoint, official
            layout or mmext layout (see :meth:`load_pretrained`).
            ``weights_only=False`` is the opt-in for a trusted file holding
            Python objects that weights-only loading refuses.
    """

    #: Published variants: name -> settings (``arch=`` picks one by name).
    arch_settings = {}
    #: Other names of the variants: alias -> name in :attr:`arch_settings`.
    arch_aliases = {}
    #: mmengine init configs applied when the model is not loaded from a checkpoint.
    default_init_cfg = None
    #: Key prefixes of official checkpoints that only the classifier uses.
    official_drop_prefixes = ('head.', )
    #: Regexes of this model's keys that official classification checkpoints
    #: never hold (e.g. the per-output norms of the dense form).
    expected_missing = ()

    def __init__(self, out_indices=(0, 1, 2, 3), frozen_stages=-1, norm_eval=False,
                 with_cp=False, init_cfg=None):
        super().__init__(init_cfg=copy.deepcopy(
            self.default_init_cfg if init_cfg is None else init_cfg))
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp

    # -- variants ----------------------------------------------------------------
    @classmethod
    def arch_key(cls, name):
        """The :attr:`arch_settings` key that ``name`` stands for (any case,
        aliases resolved); an unknown name is returned as it is."""
        key = name.lower()
        return cls.arch_aliases.get(key, key)

    @classmethod
    def resolve_arch(cls, arch, required=(), per_stage=()):
        """Settings of ``arch``: a published variant by name, or a dict.

        Args:
            arch (str | dict): The ``arch`` argument.
            required (Sequence[str]): Keys a custom dict must hold.
            per_stage (Sequence[str]): Those of them that need one entry per
                stage.

        Returns:
            dict: A copy of the settings, safe to modify.
        """
        name = cls.__name__
        if isinstance(arch, str):
            key = cls.arch_key(arch)
            if key not in cls.arch_settings:
                aliases = f' (aliases {sorted(cls.arch_aliases)})' if cls.arch_aliases else ''
                raise ValueError(f'{name}: unknown arch {arch!r}; choose from '
                                 f'{sorted(cls.arch_settings)}{aliases} or pass a dict')
            return copy.deepcopy(cls.arch_settings[key])
        if not isinstance(arch, dict):
            raise ValueError(f'{name}: arch must be a str or a dict, got {type(arch).__name__}')
        missing = [k for k in required if k not in arch]
        if missing or any(len(arch[k]) != 4 for k in per_stage if k in arch):
            raise ValueError(
                f'{name}: a custom arch needs the keys {list(required)}'
                + (f', {list(per_stage)} with 4 entries each (one per stage)' if per_stage else '')
                + (f'; missing {missing}' if missing else ''))
        return copy.deepcopy(dict(arch))

    # -- what a subclass provides --------------------------------------------
    @property
    def num_stages(self):
        return 4

    def stage_modules(self, index):
        """Modules making up stage ``index`` (0-based), its patch embedding /
        downsampling and output norm included: what ``frozen_stages`` freezes."""
        raise NotImplementedError

    @classmethod
    def convert_official(cls, state_dict):
        """Official classification-checkpoint keys to this class's keys.

        Classification-only keys (:attr:`official_drop_prefixes`) may be left
        in; :meth:`to_model_state_dict` drops them. The default is the
        identity (the class uses the official names)."""
        return dict(state_dict)

    def adapt_state_dict(self, state_dict):
        """Shape changes that depend on this instance (e.g. a filter stored at
        the training resolution); called after conversion. Default: none."""
        return state_dict

    # -- frozen stages, norm_eval ---------------------------------------------
    def _check_stage_args(self):
        if not all(0 <= i < self.num_stages for i in self.out_indices):
            raise ValueError(f'{type(self).__name__}: out_indices {self.out_indices} must lie '
                             f'in [0, {self.num_stages - 1}]')
        if not -1 <= self.frozen_stages <= self.num_stages:
            raise ValueError(f'{type(self).__name__}: frozen_stages={self.frozen_stages} must '
                             f'lie in [-1, {self.num_stages}]')

    def _freeze_stages(self):
        for i in range(max(self.frozen_stages, 0)):
            for m in self.stage_modules(i):
                m.eval()
                for p in m.parameters():
                    p.requires_grad = False

    def train(self, mode=True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    # -- checkpoints -----------------------------------------------------------
    def init_weights(self):
        """Initialise as configured; ``init_cfg=dict(type='Pretrained',
        checkpoint=...)`` first applies :attr:`default_init_cfg`, then
        :meth:`load_pretrained`. mmengine's per-parameter init log (written
        after the outermost ``init_weights``) says ``PretrainedInit: load
        from <checkpoint>`` for the loaded parameters.

        Raises:
            MMExtError: an unknown key in a Pretrained ``init_cfg``, or what
                :meth:`load_pretrained` raises.
        """
        init_cfg = self.init_cfg
        if not (isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained'):
            super().init_weights()
            return
        unknown = sorted(set(init_cfg) - {'type', 'checkpoint', 'prefix', 'map_location',
                                          'weights_only'})
        if unknown:
            raise MMExtError(f"{type(self).__name__}: unknown init_cfg key(s) {unknown} of "
                             "type='Pretrained'; use checkpoint, prefix, map_location or "
                             'weights_only')
        # mmengine's BaseModule.init_weights dumps the per-parameter init log
        # and deletes its record at the end of the outermost call, i.e. before
        # the checkpoint below is loaded (the log would say "the value is the
        # same"); as the outermost module we own the record, so the dump comes
        # after loading and says which parameters came from the checkpoint.
        top_level = not hasattr(self, '_params_init_info')
        if top_level:
            self._params_init_info = defaultdict(dict)
            for param in self.parameters():
                self._params_init_info[param]['init_info'] = (
                    'The value is the same before and after calling `init_weights` '
                    f'of {type(self).__name__} ')
                self._params_init_info[param]['tmp_mean_value'] = param.data.mean().cpu()
            for module in self.modules():
                module._params_init_info = self._params_init_info
        try:
            # Keys a checkpoint lacks (a dense-only norm) still start from the
            # design's own initialisation, not from PyTorch's defaults.
            self.init_cfg = copy.deepcopy(self.default_init_cfg)
            try:
                super().init_weights()
            finally:
                self.init_cfg = init_cfg
            self.load_pretrained(init_cfg['checkpoint'], prefix=init_cfg.get('prefix'),
                                 weights_only=init_cfg.get('weights_only', True),
                                 map_location=init_cfg.get('map_location', 'cpu'))
            if top_level:
                self._dump_init_info()
        finally:
            if top_level:
                for module in self.modules():
                    del module._params_init_info

    def to_model_state_dict(self, state_dict):
        """Bring a checkpoint's weights to this model's layout: official or
        mmext names (whichever fits more keys), classification keys dropped,
        shapes adapted."""
        own = set(self.state_dict())
        as_is = dict(state_dict)
        converted = type(self).convert_official(dict(state_dict))
        state_dict = converted if len(own & set(converted)) > len(own & set(as_is)) else as_is
        # Classifier weights are expected in a classification checkpoint, not news.
        state_dict = {k: v for k, v in state_dict.items()
                      if k in own or not k.startswith(self.official_drop_prefixes)}
        return self.adapt_state_dict(state_dict)

    def load_pretrained(self, checkpoint, prefix=None, weights_only=True, map_location='cpu'):
        """Load ``checkpoint`` (path or URL) into this backbone.

        The file is read by :func:`mmext.utils.checkpoint.read_state_dict`
        (weights under ``state_dict`` / ``model`` / ``model_state`` or at the
        top level, ``module.`` removed). ``prefix`` picks a sub-module's
        weights (``'backbone.'`` of a detector checkpoint). Shape mismatches
        are an error; keys missing from the checkpoint (beyond
        :attr:`expected_missing`) and keys the model does not have are logged
        by name.

        Args:
            checkpoint (str): Path or URL.
            prefix (str, optional): Only keys starting with it, stripped of it.
            weights_only (bool): ``False`` unpickles any Python object of a
                trusted file (see :func:`mmext.utils.checkpoint.load_checkpoint`).
            map_location (str): Device the tensors are read to.

        Returns:
            dict: ``missing``, ``unexpected`` and ``expected_missing`` key lists.

        Raises:
            MMExtError: the file is missing or refused, no key fits, or a
                shape differs.
        """
        name = type(self).__name__
        state_dict = read_state_dict(checkpoint, map_location=map_location,
                                     weights_only=weights_only)
        if prefix:
            state_dict = {k[len(prefix):]: v for k, v in state_dict.items()
                          if k.startswith(prefix)}
            if not state_dict:
                raise MMExtError(f'{name}: no key of {checkpoint} starts with {prefix!r}')
        state_dict = self.to_model_state_dict(state_dict)
        own = self.state_dict()
        bad_shape = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
                     for k, v in state_dict.items() if k in own and v.shape != own[k].shape]
        if bad_shape:
            raise MMExtError(f'{name}: {checkpoint} does not fit the model ({len(bad_shape)} '
                             f'shape mismatches: {_preview(bad_shape, 4)}); is the arch right?')
        matched = [k for k in state_dict if k in own]
        if not matched:
            raise MMExtError(
                f'{name}: no key of {checkpoint} matches the model, in the official or the '
                f'mmext layout (first keys: {_preview(list(state_dict), 4)})')
        missing = sorted(set(own) - set(state_dict))
        expected = [k for k in missing if any(re.search(p, k) for p in self.expected_missing)]
        missing = [k for k in missing if k not in expected]
        unexpected = sorted(set(state_dict) - set(own))
        self.load_state_dict(state_dict, strict=False)
        # Inside init_weights mmengine logs each parameter's origin from this
        # shared record; mark the loaded ones explicitly (not by a change of
        # their mean, which a ones-initialised norm weight may keep).
        record = getattr(self, '_params_init_info', None)
        if record is not None:
            params = dict(self.named_parameters())
            for k in matched:
                if k in params and params[k] in record:
                    record[params[k]]['init_info'] = f'PretrainedInit: load from {checkpoint}'
                    record[params[k]]['tmp_mean_value'] = params[k].data.mean().cpu()
        logger = MMLogger.get_current_instance()
        print_log(f'{name}: loaded {len(matched)}/{len(own)} tensors from {checkpoint}',
                  logger=logger)
        if expected:
            print_log(f'{name}: {len(expected)} keys not in classification checkpoints, '
                      f'initialised as configured: {_preview(expected)}', logger=logger)
        if missing:
            print_log(f'{name}: {len(missing)} keys missing from {checkpoint} (left at their '
                      f'initialisation): {_preview(missing)}', logger=logger, level=30)
        if unexpected:
            print_log(f'{name}: {len(unexpected)} unexpected keys in {checkpoint} (ignored): '
                      f'{_preview(unexpected)}', logger=logger, level=30)
        self._is_init = True
        return dict(missing=missing, unexpected=unexpected, expected_missing=expected)
