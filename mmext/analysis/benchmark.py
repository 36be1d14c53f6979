"""Speed benchmark: inference latency and training step time of a config, side
by side with a reference implementation, against this machine's limits.

``tools/analysis_tools/benchmark.py`` is the command line; everything here
returns dataclasses and :func:`render` turns a :class:`BenchmarkResult` into a
Markdown report.

What is timed:

* inference: one forward pass of a batch under ``torch.no_grad`` in eval mode,
  reported per image (ms/img). Full detectors / segmentors run
  ``model(inputs, data_samples, mode='predict')`` (post-processing such as NMS
  included); backbones and timm models run ``model(inputs)``. The data
  preprocessor is not timed: every model gets the same normalised batch.
* training (``--train``): forward, backward and an SGD step on a synthetic
  batch, per step. Full models go through their loss path
  (``mode='loss'`` with synthetic boxes / masks / label maps); if that fails
  the backbone is timed instead and a note says so. Backbones and timm models
  minimise the mean of their feature maps.

References: a second config, a timm model (``timm:NAME``, ``features_only``)
or an mmpretrain backbone (``mmpretrain:TYPE:ARCH``, all stage outputs), or
``reference``: the implementation the config's backbone class declares
(``reference_implementations``, see :func:`listed_references`). A reference
whose package is not installed is skipped with a one-line note and the
config is timed alone.

Models are run interleaved (A, B, B, A, A, B, ...) on the same inputs so that
drift of the machine (other processes, clocks) hits both alike. Warm-up
repeats are excluded; the median and the spread (quartiles and min / max) of
the remaining repeats are reported.

Machine limit: a large float32 matmul and a 3x3 convolution are timed in the
same process, and each model's achieved throughput (its FLOP count at the
same input shape, :func:`mmext.analysis.flops.count_flops`, divided by its
median latency) is printed as a fraction of them. The count is one FLOP per
multiply-add (the convention of mmext's docs tables and get_flops.py);
throughputs count two FLOPs per multiply-add, as the GEMM figure ``2 n^3 / t``
does, so the fractions compare like with like.
"""
import ast
import copy
import dataclasses
import importlib.util
import inspect
import math
import os.path as osp
import statistics
import sys
import time
import warnings
from importlib import import_module

import torch
from torch import nn

from mmext.utils.errors import MMExtError
from .model_complexity import format_gflops, format_mparams, markdown_table

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


# --------------------------------------------------------------------------
# references
# A backbone class declares, in its own file, the reference implementations of
# it that can be built inside the project: ``reference_implementations``, a
# class attribute {arch key: (reference spec, ...)}, the first installed spec
# used; each gives the same stage outputs as the backbone (same shapes). The
# arch key is the backbone config's ``arch``, or what the optional
# ``reference_arch_key(backbone_cfg)`` returns. A design whose configs build
# another library's class declares them on its mmext.models.upstream
# UpstreamDesign (mmdet's PVTv2: mmext/models/backbones/pvt.py).
# mmpretrain's arguments for "every stage's (N, C, H, W) map", set where the
# backbone's __init__ takes them; a spec may override or add any argument
# (``mmpretrain:TYPE:ARCH;out_indices=(1, 2, 4, 6)``), so a design declares
# what its reference needs without an entry here.
MMPRETRAIN_STAGE_OUTPUTS = dict(out_indices=(0, 1, 2, 3), out_scales=(0, 1, 2, 3),
                                gap_before_final_norm=False)
KINDS = {'timm': 'timm', 'mmpretrain': 'mmpretrain'}  # reference kind: its package


@dataclasses.dataclass(frozen=True)
class Reference:
    """What to benchmark: a config file, a timm model or an mmpretrain backbone.

    Attributes:
        kind (str): ``'config'``, ``'timm'`` or ``'mmpretrain'``.
        name (str): The config path, the timm model name (no prefix) or
            ``TYPE:ARCH`` of an mmpretrain backbone.
    """

    kind: str
    name: str

    @property
    def label(self):
        return self.name if self.kind == 'config' else f'{self.kind}:{self.name}'

    @property
    def installed(self):
        """False when the package that builds it is missing."""
        return self.kind not in KINDS or importlib.util.find_spec(KINDS[self.kind]) is not None


def _declaring(cls, registry):
    """What declares ``reference_implementations`` for the class ``cls``: the
    class itself or the upstream design whose type resolves to it."""
    if getattr(cls, 'reference_implementations', None) is not None:
        return cls
    from mmext.models.upstream import upstream_designs
    return next((d for d in upstream_designs() if registry.get(d.upstream) is cls), None)


def listed_references(backbone_cfg, scope='mmext'):
    """The reference specs a backbone config's class declares
    (``reference_implementations``, see above).

    Args:
        backbone_cfg (dict): ``type`` and the config's arguments.
        scope (str): The library whose ``MODELS`` registry resolves
            ``type`` (the config's default scope). Defaults to ``'mmext'``.

    Returns:
        tuple[str]: Reference specs (:func:`parse_reference`); empty when
        the type is unknown or declares none for this variant.
    """
    import mmext.models  # noqa: F401  (registration, the upstream designs)
    registry = import_module(f'{scope}.registry').MODELS
    cls = registry.get(str(backbone_cfg.get('type', '')))
    owner = None if cls is None else _declaring(cls, registry)
    if owner is None:
        return ()
    key_of = getattr(owner, 'reference_arch_key', None) or (lambda cfg: _arch_of(owner, cfg))
    key = key_of(backbone_cfg)
    return () if key is None else tuple(owner.reference_implementations.get(key, ()))


def _arch_of(cls, cfg):
    """The variant name a config builds: its ``arch`` (the class's default
    when absent, an alias resolved); None for a custom arch (a dict)."""
    arch = cfg.get('arch', inspect.signature(cls.__init__).parameters.get(
        'arch', inspect.Parameter('arch', inspect.Parameter.KEYWORD_ONLY)).default)
    if not isinstance(arch, str):
        return None
    return getattr(cls, 'arch_aliases', {}).get(arch, arch)


def declared_references():
    """Every declaration of reference implementations: ``{name:
    {arch key: specs}}``, the registered mmext classes by registered name and
    the upstream designs by their ``upstream`` type."""
    import mmext.models  # noqa: F401
    from mmext.models.upstream import upstream_designs
    from mmext.registry import MODELS
    found = {name: cls.reference_implementations for name, cls in MODELS.module_dict.items()
             if getattr(cls, 'reference_implementations', None) is not None}
    found.update({d.upstream: d.reference_implementations for d in upstream_designs()
                  if d.reference_implementations})
    return found


def parse_reference(spec, root=None):
    """Parse ``CONFIG`` / ``--compare`` arguments.

    ``timm:NAME`` is a timm model; ``mmpretrain:TYPE:ARCH`` an mmpretrain
    backbone (every stage's map: :data:`MMPRETRAIN_STAGE_OUTPUTS` where the
    class takes them, plus any ``;key=value`` of the spec); a path that
    exists or ends in ``.py`` is a config, as is an installed package's
    config named ``mmdet::x/y.py`` (``mmseg::``, ``mmext::``, as ``--compare
    mmdet::regnet/retinanet_regnetx-3.2GF_fpn_1x_coco.py``); any other bare name is a timm model
    if timm knows it. A timm or mmpretrain name is checked only when its
    package is installed (see :attr:`Reference.installed`).

    Raises:
        MMExtError: For a missing config file, a name timm does not know or
            a malformed ``mmpretrain:`` spec.
    """
    spec = str(spec).strip()
    if spec.startswith('mmpretrain:'):
        name = spec[len('mmpretrain:'):]
        if ':' not in name.split(';')[0]:
            raise MMExtError(f"'{spec}': use mmpretrain:TYPE:ARCH (optionally followed by "
                             "';key=value' backbone arguments)")
        mmpretrain_arguments(name)  # a malformed argument is an error now, not at build
        return Reference('mmpretrain', name)
    if spec.startswith('timm:'):
        name = spec[len('timm:'):]
        _check_timm_name(name)
        return Reference('timm', name)
    if '::' in spec:
        from mmext.utils.config import resolve_config_path
        resolve_config_path(spec)  # a missing file is an error now, not at build
        return Reference('config', spec)
    path = spec if osp.isabs(spec) or root is None else osp.join(root, spec)
    if osp.isfile(path):
        return Reference('config', spec)
    if spec.endswith('.py') or osp.sep in spec:
        raise MMExtError(f'config file not found: {path}')
    _check_timm_name(spec, bare=True)
    return Reference('timm', spec)


def mmpretrain_arguments(name):
    """``TYPE:ARCH[;key=value...]`` (a ``mmpretrain:`` spec without its
    prefix) as ``(TYPE, ARCH, {key: value})``; values are Python literals.

    Raises:
        MMExtError: a ``key=value`` part that is not ``identifier=literal``.
    """
    head, *parts = name.split(';')
    backbone_type, arch = head.split(':', 1)
    kwargs = {}
    for part in parts:
        key, sep, value = part.partition('=')
        try:
            if not (sep and key.strip().isidentifier()):
                raise ValueError(part)
            kwargs[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise MMExtError(f"mmpretrain:{name}: '{part}' is not key=<Python literal>")
    return backbone_type, arch, kwargs


def _check_timm_name(name, bare=False):
    import timm
    if name and timm.is_model(name):
        return
    close = timm.list_models(f'*{name}*')[:5] if name else []
    what = f"'{name}' is neither a config file nor a timm model name" if bare else \
        f"timm has no model '{name}'"
    raise MMExtError(what + (f"; close timm names: {', '.join(close)}" if close else ''))


# --------------------------------------------------------------------------
# results
@dataclasses.dataclass(frozen=True)
class Spread:
    """Median and spread of repeated timings (milliseconds)."""

    median: float
    q1: float
    q3: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, values):
        values = sorted(values)
        if not values:
            raise ValueError('no timings')
        if len(values) >= 2:
            q1, _, q3 = statistics.quantiles(values, n=4, method='inclusive')
        else:
            q1 = q3 = values[0]
        return cls(median=statistics.median(values), q1=q1, q3=q3, min=values[0],
                   max=values[-1], n=len(values))

    @property
    def iqr(self):
        return self.q3 - self.q1


@dataclasses.dataclass(frozen=True)
class MachineLimit:
    """Throughput of this machine on dense float32 work, measured in-process.

    Attributes:
        device (str): ``cpu`` or ``cuda``.
        threads (int): ``torch.get_num_threads()`` during the run.
        gemm_size (int): ``n`` of the ``n x n @ n x n`` matmul.
        gemm_gflops (float): Best of the repeats, ``2 n^3 / t`` in GFLOP/s.
        conv_shape (tuple): ``(N, C_in, H, W, C_out)`` of the 3x3 convolution
            (stride 1, padding 1).
        conv_gflops (float): Best of the repeats, 2 FLOPs per multiply-add.
    """

    device: str
    threads: int
    gemm_size: int
    gemm_gflops: float
    conv_shape: tuple
    conv_gflops: float


@dataclasses.dataclass(frozen=True)
class ModelResult:
    """Timings of one model.

    Attributes:
        name (str): Config path, ``timm:NAME`` or the given module name.
        target (str): What was built and timed, e.g. ``RetinaNet``,
            ``backbone ResNet`` or ``timm features``.
        params (int): All parameters of the timed model.
        trainable_params (int): Parameters that the training step updates.
        flops (int | None): Multiply-adds (count_flops) per image at the
            benchmark shape (None when the trace failed).
        uncounted_ops (tuple[str]): Traced ops without a FLOP handle.
        infer (Spread): Inference latency, ms per image.
        train (Spread | None): Training step time, ms per step (batch).
        train_path (str | None): What the training step ran.
    """

    name: str
    target: str
    params: int
    trainable_params: int
    flops: object
    uncounted_ops: tuple
    infer: Spread
    train: object = None
    train_path: object = None

    @property
    def achieved_gflops(self):
        """Throughput of the inference pass, 2 FLOPs per multiply-add."""
        if not self.flops or self.infer.median <= 0:
            return None
        return 2 * self.flops / (self.infer.median * 1e-3) / 1e9


@dataclasses.dataclass(frozen=True)
class BenchmarkResult:
    device: str
    shape: tuple
    batch: int
    repeats: int
    warmup: int
    models: tuple
    machine: object = None
    notes: tuple = ()
    train_batch: object = None

    def ratio(self, what='infer'):
        """A/B of the first two models: ``'infer'``, ``'train'`` (medians),
        ``'params'`` or ``'flops'``; None when either side lacks it."""
        if len(self.models) < 2:
            return None
        a, b = self.models[:2]
        va, vb = (getattr(m, what) for m in (a, b))
        if isinstance(va, Spread):
            va, vb = va.median, (vb.median if vb is not None else None)
        if va is None or vb is None or vb == 0:
            return None
        return va / vb

    def to_dict(self):
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------
# subjects: a model plus how to feed and train it
def _flat_tensors(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flat_tensors(o)]
    return []


class Subject:
    """A model to benchmark and how to call it.

    ``kind`` is ``'tensor'`` (``model(x)``, any nesting of tensors out) or
    ``'mmdet'`` / ``'mmseg'`` (a detector / segmentor called with data
    samples). Build one with :meth:`from_module` or :func:`build_subject`.
    """

    def __init__(self, name, model, kind='tensor', target=None, num_classes=1,
                 backbone=None):
        self.name = name
        self.model = model
        self.kind = kind
        self.target = target or type(model).__name__
        self.num_classes = max(int(num_classes), 1)
        # The backbone of a full model: the fallback of the training step.
        self.backbone = backbone
        # The config dict it was built from (None for timm / bare modules).
        self.model_cfg = None
        self.train_path = None
        self.notes = []

    @classmethod
    def from_module(cls, name, module):
        """Any ``nn.Module`` that takes an ``(N, 3, H, W)`` tensor."""
        return cls(name, module, 'tensor')

    # ---- inputs
    def _samples(self, x, with_gt):
        n, _, h, w = x.shape
        meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                    batch_input_shape=(h, w), scale_factor=(1.0, 1.0), flip=False)
        samples = []
        if self.kind == 'mmdet':
            from mmdet.testing import demo_mm_inputs

            # mmdet's synthetic batch: three random boxes with masks per image.
            # Its labels start at 1 (at least two classes): wrapped into range.
            demo = demo_mm_inputs(n, (3, h, w), num_items=[3] * n,
                                  num_classes=max(self.num_classes, 2), with_mask=True)
            for s in demo['data_samples']:
                s.set_metainfo(meta)
                if with_gt:
                    gt = s.gt_instances
                    gt.labels = gt.labels % self.num_classes
                    s.gt_instances = gt.to(x.device)
                else:
                    del s.gt_instances
                del s.ignored_instances
                samples.append(s)
        else:
            # mmseg 1.2.2 has no counterpart of mmdet.testing.demo_mm_inputs.
            from mmengine.structures import PixelData
            from mmseg.structures import SegDataSample
            gen = torch.Generator().manual_seed(1)
            for i in range(n):
                s = SegDataSample(metainfo=meta)
                if with_gt:
                    labels = torch.randint(0, self.num_classes, (1, h, w), generator=gen)
                    s.gt_sem_seg = PixelData(data=labels.to(x.device))
                samples.append(s)
        return samples

    # ---- inference
    def infer_fn(self, x):
        """A no-argument callable running one inference pass on ``x``."""
        model = self.model
        model.eval()
        if self.kind == 'tensor':
            def run():
                with torch.no_grad():
                    model(x)
        else:
            samples = self._samples(x, with_gt=False)

            def run():
                with torch.no_grad():
                    model(x, samples, mode='predict')
        return run

    # ---- training
    def _trainable(self, module):
        return [p for p in module.parameters() if p.requires_grad]

    def train_fn(self, x):
        """A no-argument callable running one training step on ``x``."""
        if self.kind != 'tensor':
            samples = self._samples(x, with_gt=True)
            model = self.model
            opt = torch.optim.SGD(self._trainable(model), lr=1e-5, momentum=0.9)

            def step():
                losses = model(x, samples, mode='loss')
                loss, _ = model.parse_losses(losses)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            model.train()
            try:
                step()  # fails early (here, untimed) when the loss path cannot run
                self.train_path = f'{self.target} loss (synthetic ground truth)'
                return step
            except Exception as exc:  # noqa: B902  (any failure -> documented fallback)
                first_line = (str(exc).splitlines() or [''])[0][:120]
                self.notes.append(f'{self.name}: loss path failed ({type(exc).__name__}: '
                                  f'{first_line}); the training step is timed on the '
                                  'backbone alone')
                model.eval()
                module = self.backbone
        else:
            module = self.model
        opt = torch.optim.SGD(self._trainable(module), lr=1e-5, momentum=0.9)

        def step():
            feats = _flat_tensors(module(x))
            loss = sum(f.float().mean() for f in feats)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        module.train()
        self.train_path = ('loss = mean of the outputs' if module is self.model
                           else 'backbone alone: mean of features')
        return step

    def trainable_params(self):
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    # ---- FLOPs
    def flop_count(self, x1):
        """:func:`mmext.analysis.flops.count_flops` of one image ``x1``
        (1x3xHxW) in eval mode. Full models trace their tensor forward
        (``_forward``), so post-processing is not counted; its module names
        are those of the model (``backbone``, ``neck``, ...). Raises when the
        trace fails."""
        from .flops import count_flops
        model = self.model
        model.eval()
        if self.kind == 'tensor':
            return count_flops(model, (x1, ))
        count = count_flops(_TensorForward(model, self._samples(x1, with_gt=False)), (x1, ))
        # The wrapper holds the model as ``model``: drop that level.
        count.by_module = {k[len('model.'):] if k.startswith('model.') else
                           ('' if k == 'model' else k): v
                           for k, v in count.by_module.items()}
        return count

    def count_flops(self, x1):
        """FLOPs of one image ``x1`` as :meth:`flop_count`: ``(flops,
        uncounted ops)``; flops is None (and a note says why) when the trace
        fails."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                count = self.flop_count(x1)
        except Exception as exc:  # noqa: B902
            self.notes.append(f'{self.name}: FLOP trace failed ({type(exc).__name__}); '
                              'no throughput figures')
            return None, ()
        return count.total, count.uncounted_ops


class _TensorForward(nn.Module):

    def __init__(self, model, samples):
        super().__init__()
        self.model = model
        self.samples = samples

    def forward(self, x):
        return self.model._forward(x, self.samples)


def _min_num_classes(node):
    found = []

    def walk(n):
        if isinstance(n, dict):
            v = n.get('num_classes')
            if isinstance(v, int) and v > 0:
                found.append(v)
            for c in n.values():
                walk(c)
        elif isinstance(n, (list, tuple)):
            for c in n:
                walk(c)

    walk(node)
    return min(found) if found else 1


def build_subject(ref, backbone_only=False, root=None, cfg_options=None, shape=None):
    """Build the :class:`Subject` of a :class:`Reference` (untrained weights:
    no checkpoint is loaded); ``cfg_options`` override keys of a config, a
    relative config path is taken from ``root`` (default: as given). A timm
    model that takes ``img_size`` is built for ``shape`` ``(H, W)`` (MViTv2
    sizes its relative-position tables by it, square only: the longer side)."""
    from mmengine.model import revert_sync_batchnorm
    if ref.kind == 'timm':
        import timm
        sizes = [dict(img_size=tuple(shape)), dict(img_size=max(shape))] if shape else []
        for size in sizes + [{}]:
            try:
                model = timm.create_model(ref.name, pretrained=False, features_only=True,
                                          **size)
                break
            except (TypeError, AssertionError):  # no (such) img_size: try the next form
                if not size:
                    raise
        return Subject(ref.label, model, 'tensor', target='timm features')
    if ref.kind == 'mmpretrain':
        from mmpretrain import models as mmpretrain_models
        backbone_type, arch, kwargs = mmpretrain_arguments(ref.name)
        cls = getattr(mmpretrain_models, backbone_type, None)
        if cls is None:
            raise MMExtError(f"mmpretrain has no backbone '{backbone_type}' ({ref.label})")
        accepted = inspect.signature(cls.__init__).parameters
        defaults = {k: v for k, v in MMPRETRAIN_STAGE_OUTPUTS.items() if k in accepted}
        model = cls(arch=arch, **dict(defaults, **kwargs))
        return Subject(ref.label, model, 'tensor', target=f'mmpretrain {backbone_type}')

    import mmext  # noqa: F401  (stack fixes, the mmext scope)
    from mmengine.registry import DefaultScope

    from mmext.utils.config import load_config, register_library
    from mmext.utils.embedded import _strip_pretrained
    path = ref.name if osp.isabs(ref.name) or root is None else osp.join(root, ref.name)
    if not osp.isfile(path):
        path = ref.name
    cfg = load_config(path, cfg_options)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        lib = register_library(cfg)
    registry = import_module(f'{lib}.registry').MODELS
    model_cfg = copy.deepcopy(cfg.model)
    # No weights are loaded (untrained models are timed); a model-level
    # ``pretrained`` would reach backbones that do not take it.
    _strip_pretrained(model_cfg)
    with DefaultScope.overwrite_default_scope(lib), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        if backbone_only:
            model = registry.build(model_cfg.backbone)
        else:
            model = registry.build(model_cfg)
    # One process, no process group: SyncBN is plain BN (and has no CPU kernel).
    model = revert_sync_batchnorm(model)
    if backbone_only:
        subject = Subject(ref.label, model, 'tensor', target=f"backbone {model_cfg.backbone.type}")
        subject.model_cfg = model_cfg.backbone
        return subject
    subject = Subject(ref.label, model, lib, target=type(model).__name__,
                      num_classes=_min_num_classes(model_cfg),
                      backbone=getattr(model, 'backbone', None))
    subject.model_cfg = model_cfg
    if getattr(model, 'with_roi_head', False):
        # _forward runs the RoI heads on a fixed number of RoIs, predict on
        # the proposals / detections the (untrained) model actually keeps.
        subject.notes.append(f'{ref.label}: two-stage detector, its FLOPs count the RoI heads '
                             'on fixed RoI budgets while predict runs them on what survives '
                             'NMS, so its GFLOP/s overstates; use --backbone-only for a clean '
                             'throughput figure')
    return subject


# --------------------------------------------------------------------------
# machine limits
def _sync(device):
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()


def _best_time(fn, device, repeats):
    fn()  # warm-up: allocation, kernel selection
    best = math.inf
    for _ in range(max(1, repeats)):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def gemm_gflops(device='cpu', size=None, repeats=3):
    """Dense float32 ``size x size`` matmul throughput in GFLOP/s
    (``2 size^3`` FLOPs; best of ``repeats``)."""
    size = size or (8192 if str(device).startswith('cuda') else 2048)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(device)
    b = torch.randn(size, size, generator=gen).to(device)
    with torch.no_grad():
        t = _best_time(lambda: torch.mm(a, b), device, repeats)
    return 2 * size**3 / t / 1e9


def conv_gflops(device='cpu', shape=None, repeats=3):
    """3x3 convolution (stride 1, padding 1) float32 throughput in GFLOP/s;
    ``shape`` is ``(N, C_in, H, W, C_out)``."""
    shape = tuple(shape or ((32, 256, 56, 56, 256) if str(device).startswith('cuda')
                            else (8, 128, 56, 56, 128)))
    n, cin, h, w, cout = shape
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, cin, h, w, generator=gen).to(device)
    weight = torch.randn(cout, cin, 3, 3, generator=gen).to(device) * 0.01
    with torch.no_grad():
        t = _best_time(lambda: torch.nn.functional.conv2d(x, weight, padding=1), device,
                       repeats)
    return 2 * n * cout * h * w * cin * 9 / t / 1e9


def measure_machine(device='cpu', gemm_size=None, conv_shape=None, repeats=3):
    """:class:`MachineLimit` of ``device`` measured now, in this process."""
    is_cuda = str(device).startswith('cuda')
    gemm_size = gemm_size or (8192 if is_cuda else 2048)
    conv_shape = tuple(conv_shape or ((32, 256, 56, 56, 256) if is_cuda
                                      else (8, 128, 56, 56, 128)))
    return MachineLimit(device=str(device), threads=torch.get_num_threads(),
                        gemm_size=gemm_size,
                        gemm_gflops=gemm_gflops(device, gemm_size, repeats),
                        conv_shape=conv_shape,
                        conv_gflops=conv_gflops(device, conv_shape, repeats))


# --------------------------------------------------------------------------
# the benchmark
def _resolve_device(device):
    if device is None:
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if str(device).startswith('cuda') and not torch.cuda.is_available():
        raise MMExtError(f'--device {device}: CUDA is not available here (use --device cpu)')
    return str(device)


class _Progress:

    def __init__(self, total, enabled):
        self.bar = None
        if enabled and total:
            from mmengine.utils import ProgressBar
            self.bar = ProgressBar(total, file=sys.stderr)

    def update(self):
        if self.bar is not None:
            self.bar.update()

    def close(self):
        if self.bar is not None:
            sys.stderr.write('\n')
            sys.stderr.flush()


def _interleaved(fns, device, warmup, repeats, progress):
    """Seconds per call of each of ``fns``, run alternately: the order flips
    every repeat (A B, B A, ...) so neither always runs first."""
    times = [[] for _ in fns]
    for r in range(warmup + repeats):
        order = range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))
        for i in order:
            _sync(device)
            t0 = time.perf_counter()
            fns[i]()
            _sync(device)
            dt = time.perf_counter() - t0
            if r >= warmup:
                times[i].append(dt)
            progress.update()
    return times


def benchmark_subjects(subjects, shape=(224, 224), batch=1, repeats=10, warmup=3, train=False,
                       device=None, machine=True, progress=True, gemm_size=None,
                       conv_shape=None, notes=()):
    """Benchmark :class:`Subject` s interleaved on the same synthetic batch.

    Args:
        subjects (list[Subject]): The first two are A and B of the ratio.
        shape (tuple): ``(H, W)`` of the input.
        machine (bool | MachineLimit): Measure the machine limit (True), skip
            it (False) or use the given figures.

    Returns:
        BenchmarkResult
    """
    if repeats < 1 or warmup < 0 or batch < 1:
        raise MMExtError('need --repeats >= 1, --warmup >= 0 and --batch >= 1')
    device = _resolve_device(device)
    h, w = (int(s) for s in shape)
    notes = list(notes)
    if isinstance(machine, MachineLimit):
        limit = machine
    elif machine:
        limit = measure_machine(device, gemm_size, conv_shape)
    else:
        limit = None

    gen = torch.Generator().manual_seed(0)
    # Training at batch 1 fails on BatchNorm after global pooling (PPM,
    # pooled heads), so training steps use at least two images.
    train_batch = max(batch, 2) if train else None
    raw = torch.rand(max(batch, train_batch or 0), 3, h, w, generator=gen) * 255
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x_all = ((raw - mean) / std).to(device)
    x = x_all[:batch]

    for s in subjects:
        s.model.to(device)
    flops = [s.count_flops(x[:1]) for s in subjects]
    steps = (warmup + repeats) * len(subjects) * (2 if train else 1)
    bar = _Progress(steps, progress)
    try:
        infer = _interleaved([s.infer_fn(x) for s in subjects], device, warmup, repeats, bar)
        train_times = [None] * len(subjects)
        if train:
            # After inference: the SGD steps change the weights.
            train_times = _interleaved([s.train_fn(x_all) for s in subjects], device, warmup,
                                       repeats, bar)
    finally:
        bar.close()

    models = []
    for s, (fl, unc), ti, tt in zip(subjects, flops, infer, train_times):
        notes.extend(s.notes)
        params = sum(p.numel() for p in s.model.parameters())
        trainable = s.trainable_params()
        if train and trainable != params:
            notes.append(f'{s.name}: {params - trainable:,} of {params:,} parameters are frozen '
                         'by the config (frozen_stages / requires_grad=False) and not updated')
        models.append(ModelResult(
            name=s.name, target=s.target, params=params, trainable_params=trainable, flops=fl,
            uncounted_ops=unc, infer=Spread.of([t * 1e3 / batch for t in ti]),
            train=Spread.of([t * 1e3 for t in tt]) if tt else None,
            train_path=s.train_path if train else None))
    return BenchmarkResult(device=device, shape=(h, w), batch=batch, repeats=repeats,
                           warmup=warmup, models=tuple(models), machine=limit,
                           notes=tuple(notes), train_batch=train_batch)


def _listed_reference(ref, root):
    """The first installed reference the config's backbone declares, and the
    specs declared (installed or not)."""
    if ref.kind != 'config':
        raise MMExtError("--compare reference needs a config (its backbone's listed "
                         'reference is used)')
    from mmext.utils.config import library_of, load_config
    path = ref.name if osp.isabs(ref.name) or root is None else osp.join(root, ref.name)
    cfg = load_config(path)
    backbone = cfg.model.get('backbone', {})
    listed = listed_references(backbone, scope=library_of(cfg))
    if not listed:
        raise MMExtError(f"no reference implementation is declared for {ref.name}'s backbone "
                         f"({backbone.get('type')}): its class (or mmext's UpstreamDesign "
                         'for it) has no reference_implementations for this variant')
    refs = [parse_reference(spec) for spec in listed]
    return next((r for r in refs if r.installed), None), listed


def run_benchmark(config, compare=None, shape=(224, 224), batch=1, repeats=10, warmup=3,
                  train=False, backbone_only=False, device=None, machine=True, progress=True,
                  root=None, gemm_size=None, conv_shape=None):
    """Benchmark ``config`` (a config path or model reference, see
    :func:`parse_reference`) and optionally ``compare`` against it:
    another reference, or ``'reference'`` for the implementation the
    config's backbone class declares (:func:`listed_references`).

    timm and mmpretrain references are backbones; comparing a full detector /
    segmentor config with one benchmarks the config's backbone. A reference
    whose package is not installed is left out with a note (the config is
    timed alone).

    Raises:
        MMExtError: For bad arguments, an unknown reference or, with
            ``'reference'``, a backbone with no listed reference.
    """
    if repeats < 1 or warmup < 0 or batch < 1:
        raise MMExtError('need --repeats >= 1, --warmup >= 0 and --batch >= 1')
    refs = [parse_reference(config, root)]
    notes = []
    if compare == 'reference':
        other, listed = _listed_reference(refs[0], root)
        skipped = ', '.join(listed)
    elif compare is not None:
        other = parse_reference(compare, root)
        skipped = other.label
        if not other.installed:
            other = None
    if compare is not None:
        if other is None:
            kind = parse_reference(skipped.split(', ')[0]).kind
            notes.append(f'reference {skipped} skipped: {KINDS[kind]} is not installed '
                         f'(pip install {KINDS[kind]} -c tools/constraints.txt)')
            print(f'benchmark: {notes[-1]}', file=sys.stderr)
        else:
            refs.append(other)
    if not backbone_only and len(refs) == 2 and refs[0].kind == 'config' and \
            refs[1].kind != 'config':
        backbone_only = True
        notes.append(f'a {refs[1].kind} reference is a backbone, so the config\'s backbone '
                     'is benchmarked against it')
    device = _resolve_device(device)
    subjects = [build_subject(r, backbone_only, root, shape=shape) for r in refs]
    return benchmark_subjects(subjects, shape=shape, batch=batch, repeats=repeats,
                              warmup=warmup, train=train, device=device, machine=machine,
                              progress=progress, gemm_size=gemm_size, conv_shape=conv_shape,
                              notes=notes)


# --------------------------------------------------------------------------
# rendering
COLUMNS = ('model', 'timed', 'params (M)', 'FLOPs (G/img)', 'infer ms/img (median)',
           'infer IQR', 'infer min-max', 'GFLOP/s', '% GEMM', '% conv', 'train ms/step (median)',
           'train IQR')


def _f(v, fmt='.2f'):
    return '-' if v is None else format(v, fmt)


def _ratio(v):
    return '-' if v is None or not math.isfinite(v) else f'{v:.3f}'


def render(result):
    """Markdown report of a :class:`BenchmarkResult`: a header, one row per
    model, an ``A/B`` row when two models ran, and the notes."""
    h, w = result.shape
    m = result.machine
    lines = [
        f'Device {result.device}, input {result.batch}x3x{h}x{w}, {result.repeats} repeats '
        f'after {result.warmup} warm-up, models interleaved'
        + f', {m.threads if m else torch.get_num_threads()} thread(s)',
    ]
    if m:
        n, cin, ch, cw, cout = m.conv_shape
        lines.append(f'Machine limit: float32 GEMM {m.gemm_size}^3 {m.gemm_gflops:.1f} GFLOP/s; '
                     f'3x3 conv {n}x{cin}x{ch}x{cw}->{cout} {m.conv_gflops:.1f} GFLOP/s')
    rows = []
    for r in result.models:
        gf = r.achieved_gflops
        rows.append([
            f'`{r.name}`', r.target, format_mparams(r.params),
            format_gflops(r.flops, 3) if r.flops else '-',
            f'{r.infer.median:.2f}', f'{r.infer.q1:.2f}-{r.infer.q3:.2f}',
            f'{r.infer.min:.2f}-{r.infer.max:.2f}', _f(gf, '.1f'),
            _f(100 * gf / m.gemm_gflops if (gf and m) else None, '.1f'),
            _f(100 * gf / m.conv_gflops if (gf and m) else None, '.1f'),
            _f(r.train.median if r.train else None),
            f'{r.train.q1:.2f}-{r.train.q3:.2f}' if r.train else '-',
        ])
    if len(result.models) >= 2:
        a, b = result.models[:2]
        ga, gb = a.achieved_gflops, b.achieved_gflops
        rows.append(['A/B', '', _ratio(result.ratio('params')), _ratio(result.ratio('flops')),
                     _ratio(result.ratio('infer')), '', '',
                     _ratio(ga / gb if ga and gb else None), '', '',
                     _ratio(result.ratio('train')), ''])
    lines += ['', markdown_table(COLUMNS, rows, 'll' + 'r' * (len(COLUMNS) - 2)), '']
    lines.append('FLOPs: multiply-adds per image (mmengine FlopAnalyzer + mmext handles) at this '
                 'shape (tensor forward, post-processing not counted); GFLOP/s = 2 x FLOPs / '
                 'median latency, as a % of the GEMM and conv figures measured in this run.')
    trained = [r for r in result.models if r.train_path]
    if trained:
        lines.append(f'Training step (forward + backward + SGD step on a batch of '
                     f'{result.train_batch} synthetic images): '
                     + '; '.join(f'`{r.name}`: {r.train_path}' for r in trained) + '.')
    unc = sorted({op for r in result.models for op in r.uncounted_ops})
    if unc:
        lines.append('Traced ops without a FLOP handle (counted as 0): '
                     + ', '.join(f'`{op}`' for op in unc) + '.')
    for note in result.notes:
        lines.append(f'Note: {note}.' if not note.endswith('.') else f'Note: {note}')
    return '\n'.join(lines) + '\n'
