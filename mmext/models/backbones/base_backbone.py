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

The contract a subclass meets (checked when it is built, and by
``tests/test_backbone_contract.py`` for every registered backbone):

* :meth:`forward` returns a tuple with one ``(N, out_channels[i],
  ceil(H / out_strides[i]), ceil(W / out_strides[i]))`` map per entry ``i``
  of ``out_indices``, in stage order;
* its ``__init__`` sets :attr:`out_channels` and :attr:`out_strides` (one
  entry per stage, all ``num_stages`` stages, whatever ``out_indices`` is):
  the one name configs, tools and tests read for the widths and strides;
* :meth:`stage_modules` says what ``frozen_stages`` freezes;
* :attr:`backbone_examples` (in the class's own body) lists the keyword
  arguments of small instances the shared checks build.

``out_indices`` and ``frozen_stages`` are validated here before the
subclass builds anything, and ``frozen_stages`` is applied when the
instance is built (as mmdet's ResNet does) and again by every ``train()``.
Optional: :meth:`convert_official` (official key names to its own) and,
where a weight's shape depends on the runtime configuration,
:meth:`adapt_state_dict`.
"""
import abc
import copy
import math
import numbers
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


def compute_memory_format(x):
    """The memory format a backbone whose forward opts in runs its stages in
    for input ``x``: channels-last on CPU, where oneDNN's depth-wise and
    grouped convolutions are several times faster than on NCHW at
    dense-prediction sizes (each design's forward says which of its layers);
    NCHW (``torch.contiguous_format``) elsewhere, where it was not measured.
    Such a backbone still returns NCHW-contiguous maps (``.contiguous()``)."""
    return torch.channels_last if x.device.type == 'cpu' else torch.contiguous_format


def check_stage_args(owner, num_stages, out_indices, frozen_stages):
    """Validate the stage arguments shared by mmext's backbones.

    Args:
        owner (str): Class name for the messages.
        num_stages (int): Stages of the backbone.
        out_indices (Sequence[int]): Must be a non-empty, strictly increasing
            sequence of ints in ``[0, num_stages - 1]`` (the outputs come in
            stage order, one per entry).
        frozen_stages (int): Must be an int in ``[-1, num_stages]``.

    Returns:
        tuple[int]: ``out_indices`` as a tuple.

    Raises:
        ValueError: naming the class, the argument, its value and the
            allowed values.
    """
    allowed = f'[0, {num_stages - 1}]'
    if (isinstance(out_indices, (str, bytes)) or not hasattr(out_indices, '__iter__')
            or not all(isinstance(i, numbers.Integral) and not isinstance(i, bool)
                       for i in out_indices)):
        raise ValueError(f'{owner}: out_indices={out_indices!r} must be a sequence of ints '
                         f'in {allowed}')
    out_indices = tuple(int(i) for i in out_indices)
    if not out_indices:
        raise ValueError(f'{owner}: out_indices=() is empty; give stage indices in {allowed}')
    bad = [i for i in out_indices if not 0 <= i < num_stages]
    if bad:
        raise ValueError(f'{owner}: out_indices={out_indices} has {bad} outside the '
                         f'{num_stages} stages {allowed}')
    if len(set(out_indices)) != len(out_indices):
        raise ValueError(f'{owner}: out_indices={out_indices} repeats a stage; each stage in '
                         f'{allowed} at most once')
    if list(out_indices) != sorted(out_indices):
        raise ValueError(f'{owner}: out_indices={out_indices} must be increasing stages in '
                         f'{allowed} (the outputs come in stage order), e.g. '
                         f'{tuple(sorted(out_indices))}')
    if (not isinstance(frozen_stages, numbers.Integral) or isinstance(frozen_stages, bool)
            or not -1 <= frozen_stages <= num_stages):
        raise ValueError(f'{owner}: frozen_stages={frozen_stages!r} must be an int in '
                         f'[-1, {num_stages}] (-1 or 0: none frozen)')
    return out_indices


class DenseBackboneMeta(abc.ABCMeta):
    """Runs :meth:`DenseBackbone._post_init` once the outermost ``__init__``
    has returned: the only point where every subclass's modules exist (a hook
    inside the base ``__init__`` would run before the subclass builds its
    stages)."""

    def __call__(cls, *args, **kwargs):
        self = super().__call__(*args, **kwargs)
        self._post_init()
        return self


def _preview(keys, n=8):
    keys = sorted(keys)
    more = f' (+{len(keys) - n} more)' if len(keys) > n else ''
    return ', '.join(keys[:n]) + more


class DenseBackbone(BaseModule, metaclass=DenseBackboneMeta):
    """Base of mmext's multi-scale backbones.

    Output contract: ``forward(x)`` with ``x`` of shape ``(N, C_in, H, W)``
    (any ``H``, ``W``) returns a tuple holding, for each entry ``i`` of
    ``out_indices`` in order, a map of shape ``(N, out_channels[i],
    ceil(H / out_strides[i]), ceil(W / out_strides[i]))``.

    Args:
        out_indices (Sequence[int]): Stages (0-based, increasing, no repeats)
            whose outputs are returned.
        frozen_stages (int): The first ``frozen_stages`` stages (each with its
            patch embedding / downsampling and its output norm) are frozen:
            no gradient, eval mode, from construction on and after every
            ``train()``. ``-1`` or ``0`` freezes nothing.
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

    Raises:
        ValueError: ``out_indices`` or ``frozen_stages`` outside the stages
            (see :func:`check_stage_args`), before anything is built.
        TypeError: after the subclass's ``__init__``, when it did not set
            :attr:`out_channels` / :attr:`out_strides` (one int per stage).
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
    #: Stages of the network; ``out_indices`` and ``frozen_stages`` are
    #: checked against it before the subclass builds anything.
    num_stages = 4
    #: Set by the subclass's ``__init__``: channels of every stage's output,
    #: ``tuple[int]`` of length :attr:`num_stages` (all stages, not only
    #: ``out_indices``). The one attribute configs, tools and tests read.
    out_channels = None
    #: Set by the subclass's ``__init__``: the stride of every stage's output
    #: with respect to the input, ``tuple[int]`` of length :attr:`num_stages`.
    out_strides = None
    #: Keyword arguments of small instances that the shared checks of
    #: ``tests/test_backbone_contract.py`` build (tuple of dicts). Each
    #: registered class declares its own in its class body (an inherited one
    #: does not count); a class without one fails that test.
    backbone_examples = ()

    def __init__(self, out_indices=(0, 1, 2, 3), frozen_stages=-1, norm_eval=False,
                 with_cp=False, init_cfg=None):
        super().__init__(init_cfg=copy.deepcopy(
            self.default_init_cfg if init_cfg is None else init_cfg))
        self.out_indices = check_stage_args(type(self).__name__, self.num_stages, out_indices,
                                            frozen_stages)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp

    def _post_init(self):
        """After the outermost ``__init__`` (see :class:`DenseBackboneMeta`):
        check the declared widths and strides, then freeze
        ``frozen_stages``."""
        name = type(self).__name__
        for attr in ('out_channels', 'out_strides'):
            value = getattr(self, attr)
            if (not isinstance(value, tuple) or len(value) != self.num_stages
                    or not all(isinstance(v, int) for v in value)):
                raise TypeError(f'{name}.__init__ must set {attr} to a tuple of '
                                f'{self.num_stages} ints (one per stage), got {value!r}')
        self._freeze_stages()

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
        n = cls.num_stages
        if missing or any(len(arch[k]) != n for k in per_stage if k in arch):
            raise ValueError(
                f'{name}: a custom arch needs the keys {list(required)}'
                + (f', {list(per_stage)} with {n} entries each (one per stage)'
                   if per_stage else '')
                + (f'; missing {missing}' if missing else ''))
        return copy.deepcopy(dict(arch))

    # -- what a subclass provides --------------------------------------------
    @abc.abstractmethod
    def forward(self, x):
        """``(N, C_in, H, W)`` -> tuple of ``(N, out_channels[i], ceil(H /
        out_strides[i]), ceil(W / out_strides[i]))``, one per entry ``i`` of
        ``out_indices``, in order."""

    @abc.abstractmethod
    def stage_modules(self, index):
        """Modules making up stage ``index`` (0-based), its patch embedding /
        downsampling and output norm included: what ``frozen_stages`` freezes."""

    @classmethod
    def convert_official(cls, state_dict):
        """Official classification-checkpoint keys to this class's keys.

        Classification-only keys (:attr:`official_drop_prefixes`) may be left
        in; :meth:`to_model_state_dict` drops them. The default is the
        identity (the class uses the official names). A design with no
        released weights sets ``convert_official = None`` in its class body:
        the converter (``python -m mmext convert``) then does not list it,
        and its own (training) checkpoints still load."""
        return dict(state_dict)

    def adapt_state_dict(self, state_dict):
        """Shape changes that depend on this instance (e.g. a filter stored at
        the training resolution); called after conversion. Default: none."""
        return state_dict

    # -- frozen stages, norm_eval ---------------------------------------------
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
        convert = type(self).convert_official
        converted = convert(dict(state_dict)) if convert is not None else as_is
        state_dict = converted if len(own & set(converted)) > len(own & set(as_is)) else as_is
        # Classifier weights are expected in a classification checkpoint, not news.
        state_dict = {k: v for k, v in state_dict.items()
                      if k in own or not k.startswith(self.official_drop_prefixes)}
        return self.adapt_state_dict(state_dict)

    def split_missing(self, missing):
        """Missing keys as ``(missing, expected)``: ``expected`` are those
        matching :attr:`expected_missing` (absent from the official files by
        design, initialised as configured), ``missing`` the rest."""
        expected = [k for k in missing if any(re.search(p, k) for p in self.expected_missing)]
        return [k for k in missing if k not in expected], expected

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
        missing, expected = self.split_missing(sorted(set(own) - set(state_dict)))
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
