"""Gradient-matrix pruning of a ResNet-family backbone: the work behind
``tools/analysis_tools/prune.py``.

Source: Zhou, Lian, Yin, Wang, "Neural Network Compression via Effective
Filter Analysis and Hierarchical Pruning", arXiv 2206.03596. The abstract
says what the method is: the maximum redundancy of a network is estimated
from the rank deficiency (singularity) of its gradient matrix, and pruning is
hierarchical, first how many filters per layer (bounded by that estimate),
then which ones. No code was published, and the details below are mmext's
reading of that description (the catalog's, section D2), not the authors'
algorithm:

* **Gradient rows.** For a prunable convolution ``l`` with weight
  ``W_l`` of shape ``(C_out, C_in, k, k)``, reshaped to ``(C_out, C_in k^2)``,
  row ``j`` is the gradient of the training loss with respect to filter
  ``j``. Over ``B`` calibration batches of the config's training data the
  rows of each batch are concatenated: ``G_l = [g_1 | g_2 | ... | g_B]``,
  ``(C_out, B C_in k^2)``. Two filters are redundant in this sense when their
  rows are linearly dependent in every batch. Only the Gram matrix
  ``K_l = G_l G_l^T = sum_b g_b g_b^T`` (``C_out x C_out``, float64) is
  kept, so memory does not grow with ``B``; ``G_l``'s singular values are
  the square roots of ``K_l``'s eigenvalues.
* **Redundancy estimate.** ``r_l = #{i : sigma_i > tau * sigma_max}``
  (numerical rank, :data:`DEFAULT_THRESHOLD` ``tau = 0.01``, mmext's choice)
  and ``rho_l = 1 - r_l / C_out``, so at most ``floor(rho_l C_out) =
  C_out - r_l`` filters may go. A layer whose gradient is exactly zero has no
  estimate and is left alone (reported). A batch gradient is a sum of one
  rank-one term per output position (image x H x W), so ``rank(G_l)`` is at
  most the positions the calibration gave the layer: a layer with at most
  ``C_out`` of them is "data-limited" (its rank may be the data's, not the
  network's) and is left alone, with its estimate reported.
* **How many (layer-wise).** ``n_l = floor(ratio * (C_out - r_l))`` with a
  user ratio in ``[0, 1]`` (one for all layers or one per stage, default
  1: the whole estimate); at least one filter is always kept.
* **Which (filter-wise).** The importance of a filter is how much of the
  gradient row space it adds to the filters already kept: a greedy pivoted
  Cholesky factorisation of ``K_l`` (equivalently column-pivoted QR of
  ``G_l^T``) keeps, one at a time, the filter whose gradient row has the
  largest residual norm after projecting out the rows kept so far, until
  ``C_out - n_l`` are kept. Squared residual norms within ``1e-6`` times the
  largest squared row norm of the current maximum are ties, won by the lower
  filter index (exact copies: the first stays). The kept filters keep their
  order.
* **Prunable convolutions and coupled channels.** The inner convolutions of
  every residual block: conv1 and conv2 of a Bottleneck, conv1 of a
  BasicBlock. Removing filter ``j`` removes the filter, its norm channel and
  input channel ``j`` of the next convolution. The residual-coupled channels
  (the stem's output, every block output conv3 / the BasicBlock's conv2, the
  downsample convolutions; they are added to each other along a stage) are
  left alone and listed in the report, as are the inner convolutions of a
  deep stem (ResNetV1c / V1d).
* **Fine-tune** (optional): ``N`` training steps of the pruned model with the
  config's optimizer at its base learning rate (:func:`train_iterations`).
* **Calibration pass.** The model is in training mode as the config trains it
  (``norm_eval``, frozen stages as configured), gradients are switched on for
  every prunable weight (frozen stages included) and nothing is updated: the
  BatchNorm running statistics are restored afterwards.

The exported model is ``mmext.ResNet`` / ``ResNetV1c`` / ``ResNetV1d`` (the
drop-in hosts of mmdet's / mmseg's classes) with ``mid_channels``: physically
smaller tensors, no mask, loadable by mmdet's / mmseg's stock tools with
``custom_imports=dict(imports=['mmext'])`` (written into the config).
"""
import copy
import dataclasses
import json
import math
import os
import os.path as osp
import warnings

import torch

from mmext.utils.checkpoint import read_state_dict
from mmext.utils.errors import MMExtError

#: Default relative singular-value threshold ``tau`` (mmext's choice: the
#: paper's value is not public). The Gram matrix is float64, so values down
#: to about 1e-7 are resolved; the gradients themselves are float32.
DEFAULT_THRESHOLD = 0.01
#: Default number of calibration batches of the config's train dataloader.
DEFAULT_CALIB_BATCHES = 8
#: Relative tolerance below which two residual norms tie in the selection.
TIE_TOLERANCE = 1e-6

#: Backbone types pruned (registry name without scope -> the mmext class of
#: the export). mmdet's ResNet / ResNetV1d and mmseg's ResNetV1c have the
#: same state dict and defaults as these mmext hosts.
SUPPORTED = {'ResNet': 'mmext.ResNet', 'ResNetV1c': 'mmext.ResNetV1c',
             'ResNetV1d': 'mmext.ResNetV1d'}
#: mmseg's plain ResNet has other defaults than mmdet's (and mmext's).
_SCOPED_REFUSED = {'mmseg.ResNet'}


@dataclasses.dataclass
class PrunableConv:
    """One prunable convolution of a residual block.

    Attributes:
        name (str): Module path in the backbone, e.g. ``layer1.0.conv1``.
        stage (int): 0-based stage.
        block (int): 0-based block in its stage.
        index (int): 0 for conv1, 1 for conv2.
        conv, norm, next_conv (nn.Module): The convolution, its norm and the
            convolution that reads its output.
    """

    name: str
    stage: int
    block: int
    index: int
    conv: torch.nn.Module
    norm: torch.nn.Module
    next_conv: torch.nn.Module

    @property
    def out_channels(self):
        return self.conv.out_channels

    def keys(self, prefix=''):
        """State-dict keys of (conv, norm, next conv) under ``prefix``."""
        base = self.name.rsplit('.', 1)[0]
        k = self.index + 1
        return (f'{prefix}{base}.conv{k}', f'{prefix}{base}.bn{k}',
                f'{prefix}{base}.conv{k + 1}')


@dataclasses.dataclass
class LayerPlan:
    """Estimate and decision for one prunable convolution.

    Attributes:
        name (str): Module path in the backbone.
        stage, block, index (int): As :class:`PrunableConv`.
        out_channels (int): ``C_out`` before pruning.
        rank (int | None): Numerical rank ``r_l`` (None: no gradient).
        rho (float | None): ``1 - r_l / C_out``.
        max_prune (int): ``floor(rho * C_out)`` (0 without an estimate).
        n_prune (int): Filters removed.
        keep (tuple[int]): Kept filter indices, ascending.
        sigma (tuple[float]): Singular values of ``G_l``, descending.
        positions (int | None): Output positions the calibration gave the
            layer (a bound on ``rank(G_l)``).
        data_limited (bool): ``positions <= C_out``: the rank may be the
            data's, not the network's; the layer is left alone.
    """

    name: str
    stage: int
    block: int
    index: int
    out_channels: int
    rank: int = None
    rho: float = None
    max_prune: int = 0
    n_prune: int = 0
    keep: tuple = ()
    sigma: tuple = ()
    positions: int = None
    data_limited: bool = False

    def to_dict(self):
        d = dataclasses.asdict(self)
        d['keep'] = list(self.keep)
        d['sigma'] = [float(s) for s in self.sigma]
        return d


# --------------------------------------------------------------------------
# the backbone
def backbone_type(backbone_cfg, scope):
    """The mmext class an exported config uses for ``backbone_cfg`` (a
    config dict) built in ``scope`` ('mmdet' / 'mmseg').

    Raises:
        MMExtError: Any other backbone, in one line.
    """
    full = backbone_cfg.get('type', '')
    full = full if isinstance(full, str) else getattr(full, '__name__', str(full))
    name = full.split('.')[-1]
    scoped = full if '.' in full else f'{scope}.{full}'
    if name not in SUPPORTED or scoped in _SCOPED_REFUSED:
        raise MMExtError(f'prune.py prunes the ResNet family (mmext.ResNet / ResNetV1c / '
                         f"ResNetV1d, mmdet's ResNet / ResNetV1d, mmseg's ResNetV1c); this "
                         f'config\'s backbone is {full}')
    for key in ('block_cfg', 'stem_cfg', 'dcn', 'block_conv_cfg', 'conv_cfg'):
        if backbone_cfg.get(key) is not None:
            raise MMExtError(f'prune.py resizes plain convolutions; the backbone sets {key} '
                             '(prune a config without it)')
    return SUPPORTED[name]


def prunable_convs(backbone):
    """The prunable convolutions of a built ResNet-family ``backbone``:
    conv1 / conv2 of every Bottleneck, conv1 of every BasicBlock, in forward
    order.

    Raises:
        MMExtError: A block that is not a plain BasicBlock / Bottleneck, a
            non-``nn.Conv2d`` or grouped convolution, or a plugin after the
            pruned convolution.
    """
    from torch import nn
    layers = []
    for stage, layer_name in enumerate(backbone.res_layers):
        for j, block in enumerate(getattr(backbone, layer_name)):
            kind = type(block).__name__
            if kind not in ('BasicBlock', 'Bottleneck') or not hasattr(block, 'conv2'):
                raise MMExtError(f'prune.py: {layer_name}.{j} is a {kind}; only BasicBlock / '
                                 'Bottleneck blocks are pruned')
            n = 1 if kind == 'BasicBlock' else 2
            for k in range(n):
                conv = getattr(block, f'conv{k + 1}')
                nxt = getattr(block, f'conv{k + 2}')
                for c in (conv, nxt):
                    if type(c) is not nn.Conv2d or c.groups != 1:
                        raise MMExtError(f'prune.py: {layer_name}.{j} has a {type(c).__name__}'
                                         f' (groups {getattr(c, "groups", "?")}); only plain '
                                         'nn.Conv2d is pruned')
                if getattr(block, f'after_conv{k + 1}_plugin_names', None):
                    raise MMExtError(f'prune.py: {layer_name}.{j} has a plugin after '
                                     f'conv{k + 1}; prune a config without it')
                layers.append(PrunableConv(
                    f'{layer_name}.{j}.conv{k + 1}', stage, j, k, conv,
                    getattr(block, f'bn{k + 1}'), nxt))
    return layers


def coupled_channels(backbone):
    """The channels left alone: one line per residual-coupled set (stem
    output, each stage's block outputs and downsample) and the deep stem."""
    lines = []
    if getattr(backbone, 'deep_stem', False):
        lines.append('stem: the deep stem\'s inner convolutions (stem.0, stem.3) and its output '
                     '(stem.6), all unpruned')
        stem_out = backbone.stem[6].out_channels
    else:
        stem_out = backbone.conv1.out_channels
        lines.append(f'stem: conv1 ({stem_out} channels), the input of layer1 and of its '
                     'shortcut')
    for stage, layer_name in enumerate(backbone.res_layers):
        layer = getattr(backbone, layer_name)
        last = 'conv2' if type(layer[0]).__name__ == 'BasicBlock' else 'conv3'
        width = getattr(layer[0], last).out_channels
        down = ' + downsample' if layer[0].downsample is not None else ''
        lines.append(f'{layer_name}: {width} channels of the residual stream ({last} of its '
                     f'{len(layer)} blocks{down}), added to each other')
    return lines


# --------------------------------------------------------------------------
# gradient matrices
def accumulate_grams(layers, batches, loss_fn):
    """Gram matrices ``K_l = sum_b g_b g_b^T`` of the per-filter gradient
    rows of every layer over ``batches``, and how many output positions
    (images x H x W of the conv's output) each layer saw: ``rank(g_b)`` is at
    most the positions of batch ``b``, so that count bounds ``rank(G_l)``.

    Args:
        layers (list[PrunableConv]): Their ``conv.weight`` is differentiated.
        batches (iterable): Each passed to ``loss_fn``.
        loss_fn (callable): ``batch -> scalar tensor`` (the training loss).

    Returns:
        tuple[list[Tensor], int, list[int]]: One ``(C_out, C_out)`` float64
        matrix per layer, the number of batches used, the positions per layer.

    Raises:
        MMExtError: No batch at all, or a non-finite loss.
    """
    weights = [layer.conv.weight for layer in layers]
    flags = [w.requires_grad for w in weights]
    grams = [torch.zeros(w.shape[0], w.shape[0], dtype=torch.float64) for w in weights]
    positions = [0] * len(layers)

    def count(i):
        def hook(module, args, output):
            positions[i] += output.shape[0] * output[0, 0].numel()
        return hook

    hooks = [layer.conv.register_forward_hook(count(i)) for i, layer in enumerate(layers)]
    n = 0
    try:
        for w in weights:
            w.requires_grad_(True)
        for batch in batches:
            loss = loss_fn(batch)
            if not torch.isfinite(loss):
                raise MMExtError(f'calibration batch {n}: the loss is {loss.item()}; the '
                                 'checkpoint does not train on this data')
            grads = torch.autograd.grad(loss, weights, allow_unused=True)
            for gram, g in zip(grams, grads):
                if g is not None:
                    g = g.detach().reshape(g.shape[0], -1).double().cpu()
                    gram += g @ g.T
            n += 1
    finally:
        for h in hooks:
            h.remove()
        for w, flag in zip(weights, flags):
            w.requires_grad_(flag)
    if n == 0:
        raise MMExtError('no calibration batch: the train dataloader is empty')
    return grams, n, positions


def singular_values(gram):
    """Singular values of ``G`` from ``K = G G^T``, descending (float64)."""
    eig = torch.linalg.eigvalsh(gram.double()).clamp_min(0).flip(0)
    return eig.sqrt()


def numerical_rank(sigma, threshold=DEFAULT_THRESHOLD):
    """``#{i : sigma_i > threshold * sigma_max}``; 0 for an all-zero ``sigma``."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    if sigma.numel() == 0 or sigma.max() <= 0:
        return 0
    return int((sigma > threshold * sigma.max()).sum())


def select_filters(gram, n_keep, tie_tolerance=TIE_TOLERANCE):
    """Indices of the ``n_keep`` filters kept: greedy pivoted Cholesky of
    ``gram`` (the filter adding most to the span of the kept gradient rows
    first; ties to the lower index), returned ascending.

    Raises:
        ValueError: ``n_keep`` outside ``[1, C_out]``.
    """
    size = gram.shape[0]
    if not 1 <= n_keep <= size:
        raise ValueError(f'n_keep must be in [1, {size}], got {n_keep}')
    gram = gram.double()
    residual = gram.diagonal().clone()
    scale = max(float(residual.max()), 0.0)
    factor = torch.zeros(size, n_keep, dtype=torch.float64)
    chosen = []
    free = torch.ones(size, dtype=torch.bool)
    for t in range(n_keep):
        candidates = torch.where(free, residual, torch.full_like(residual, -math.inf))
        best = float(candidates.max())
        tied = torch.nonzero(candidates >= best - tie_tolerance * scale).flatten()
        j = int(tied.min())
        chosen.append(j)
        free[j] = False
        if residual[j] > tie_tolerance * scale and residual[j] > 0:
            col = (gram[:, j] - factor[:, :t] @ factor[j, :t]) / residual[j].sqrt()
            factor[:, t] = col
            residual = residual - col**2
    return tuple(sorted(chosen))


def stage_ratios(ratio, num_stages):
    """``ratio`` (a number, or one or ``num_stages`` numbers in [0, 1]) as
    one value per stage.

    Raises:
        MMExtError: Another count or a value outside [0, 1].
    """
    values = [ratio] if isinstance(ratio, (int, float)) else list(ratio)
    if len(values) == 1:
        values = values * num_stages
    if len(values) != num_stages or not all(0 <= float(v) <= 1 for v in values):
        raise MMExtError(f'--ratio takes one value or one per stage ({num_stages}), each in '
                         f'[0, 1]; got {ratio}')
    return [float(v) for v in values]


def plan_pruning(layers, grams, threshold=DEFAULT_THRESHOLD, ratio=1.0, positions=None):
    """Hierarchical pruning plan: per layer the redundancy estimate and how
    many filters go (never above ``floor(rho * C_out)``), then which.

    Args:
        layers (list[PrunableConv]): The layers.
        grams (list[Tensor]): Their Gram matrices (:func:`accumulate_grams`).
        threshold (float): ``tau`` in ``(0, 1)``.
        ratio (float | list[float]): Fraction of each layer's estimated
            redundancy to prune, one value or one per stage.
        positions (list[int], optional): Output positions per layer
            (:func:`accumulate_grams`); a layer with at most ``C_out`` gets
            its estimate but is not pruned (``data_limited``).

    Returns:
        list[LayerPlan]

    Raises:
        MMExtError: ``threshold`` outside ``(0, 1)`` or a bad ``ratio``.
    """
    if not 0 < threshold < 1:
        raise MMExtError(f'--threshold must be in (0, 1), got {threshold}')
    ratios = stage_ratios(ratio, max(layer.stage for layer in layers) + 1)
    plans = []
    for layer, gram in zip(layers, grams):
        c_out = layer.out_channels
        sigma = singular_values(gram)
        plan = LayerPlan(layer.name, layer.stage, layer.block, layer.index, c_out,
                         keep=tuple(range(c_out)), sigma=tuple(sigma.tolist()))
        if positions is not None:
            plan.positions = int(positions[len(plans)])
            plan.data_limited = plan.positions <= c_out
        rank = numerical_rank(sigma, threshold)
        if rank:
            plan.rank = rank
            plan.rho = 1 - rank / c_out
            plan.max_prune = c_out - rank
            if plan.data_limited:
                plans.append(plan)
                continue
            # floor without float round-off at ratio 1: max_prune is an int.
            plan.n_prune = min(plan.max_prune, c_out - 1,
                               math.floor(ratios[layer.stage] * plan.max_prune + 1e-9))
            if plan.n_prune:
                plan.keep = select_filters(gram, c_out - plan.n_prune)
        plans.append(plan)
    return plans


# --------------------------------------------------------------------------
# applying a plan
def mid_channels(plans, backbone):
    """The ``mid_channels`` argument of the pruned backbone (None where a
    stage or block is unchanged)."""
    out = []
    for stage, layer_name in enumerate(backbone.res_layers):
        blocks = []
        for j, block in enumerate(getattr(backbone, layer_name)):
            mine = sorted((p for p in plans if p.stage == stage and p.block == j),
                          key=lambda p: p.index)
            blocks.append([len(p.keep) for p in mine]
                          if any(p.n_prune for p in mine) else None)
        out.append(blocks if any(b is not None for b in blocks) else None)
    return out


def prune_state_dict(state_dict, layers, plans, prefix='backbone.'):
    """A copy of ``state_dict`` with the pruned filters removed: conv
    filters, norm channels (weight, bias, running statistics) and the next
    convolution's input channels."""
    out = dict(state_dict)
    for layer, plan in zip(layers, plans):
        if not plan.n_prune:
            continue
        keep = torch.tensor(plan.keep, dtype=torch.long)
        conv, norm, nxt = layer.keys(prefix)
        out[f'{conv}.weight'] = out[f'{conv}.weight'][keep].clone()
        if f'{conv}.bias' in out:
            out[f'{conv}.bias'] = out[f'{conv}.bias'][keep].clone()
        for key in ('weight', 'bias', 'running_mean', 'running_var'):
            if f'{norm}.{key}' in out:
                out[f'{norm}.{key}'] = out[f'{norm}.{key}'][keep].clone()
        out[f'{nxt}.weight'] = out[f'{nxt}.weight'][:, keep].clone()
    return out


def mask_pruned(layers, plans):
    """Forward hooks zeroing the pruned filters' outputs after their norm
    (so after the ReLU too): the masked original the pruned model must
    equal. Returns the hook handles (call ``.remove()`` on each)."""
    handles = []
    for layer, plan in zip(layers, plans):
        if not plan.n_prune:
            continue
        mask = torch.zeros(plan.out_channels)
        mask[list(plan.keep)] = 1

        def hook(module, args, output, mask=mask):
            return output * mask.to(output).view(1, -1, 1, 1)
        handles.append(layer.norm.register_forward_hook(hook))
    return handles


def pruned_config(cfg, plans, backbone, checkpoint=None):
    """A copy of ``cfg`` whose backbone is the pruned one: the mmext class
    (:func:`backbone_type`) with ``mid_channels``, no pretrained init,
    ``custom_imports`` of mmext and ``load_from`` the pruned checkpoint."""
    from mmext.utils.config import library_of
    cfg = copy.deepcopy(cfg)
    scope = library_of(cfg)
    cfg.model.backbone.type = backbone_type(cfg.model.backbone, scope)
    cfg.model.backbone.mid_channels = mid_channels(plans, backbone)
    cfg.model.backbone.init_cfg = None
    cfg.model.backbone.pop('pretrained', None)
    if cfg.model.get('pretrained'):
        cfg.model.pretrained = None
    imports = dict(cfg.get('custom_imports') or {})
    names = list(imports.get('imports', []))
    if 'mmext' not in names:
        names.append('mmext')
    cfg.custom_imports = dict(imports, imports=names, allow_failed_imports=False)
    cfg.load_from = checkpoint
    cfg.resume = False
    return cfg


def build_model(cfg):
    """``cfg.model`` built in the config's scope (mmdet / mmseg registry);
    SyncBN reverted to BN (one process)."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import DefaultScope

    from mmext.utils.config import register_library
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        lib = register_library(cfg)
    registry = __import__(f'{lib}.registry', fromlist=['MODELS']).MODELS
    with DefaultScope.overwrite_default_scope(lib):
        model = registry.build(cfg.model)
    return revert_sync_batchnorm(model)


# --------------------------------------------------------------------------
# the tool
def calibration_grams(cfg, model, layers, num_batches):
    """Gram matrices of ``layers`` over the first ``num_batches`` batches of
    ``cfg.train_dataloader`` (training loss of ``model``; random number
    generators seeded with 0); the model's buffers (BatchNorm running
    statistics) are restored afterwards."""
    from mmengine.runner import Runner
    with _in_scope(cfg):
        loader = Runner.build_dataloader(copy.deepcopy(cfg.train_dataloader), seed=0)
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    model.train()
    # The train pipeline's random flips / crops draw from the global RNGs:
    # seeded, one command gives one estimate.
    from mmengine.runner import set_random_seed
    set_random_seed(0)

    def batches():
        for i, data in enumerate(loader):
            if i >= num_batches:
                return
            yield data

    def loss_fn(data):
        data = model.data_preprocessor(data, True)
        losses = model(**data, mode='loss')
        loss, _ = model.parse_losses(losses)
        return loss

    try:
        return accumulate_grams(layers, batches(), loss_fn)
    finally:
        model.load_state_dict(buffers, strict=False)
        model.eval()


def _in_scope(cfg):
    from mmengine.registry import DefaultScope

    from mmext.utils.config import library_of
    return DefaultScope.overwrite_default_scope(library_of(cfg))


def evaluate(cfg, model):
    """Metrics of ``model`` on ``cfg``'s test dataloader and evaluator: what
    mmengine's TestLoop computes (``test_step`` per batch, the evaluator over
    the dataset), without a Runner's logging and hooks."""
    from mmengine.evaluator import Evaluator
    from mmengine.runner import Runner
    with _in_scope(cfg), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        loader = Runner.build_dataloader(copy.deepcopy(cfg.test_dataloader), seed=0)
        evaluator = Evaluator(copy.deepcopy(cfg.test_evaluator))
        evaluator.dataset_meta = getattr(loader.dataset, 'metainfo', None)
        model.eval()
        with torch.no_grad():
            for data in loader:
                evaluator.process(data_samples=model.test_step(data), data_batch=data)
        metrics = evaluator.evaluate(len(loader.dataset))
    out = {}
    for k, v in metrics.items():
        try:
            out[k] = float(v)  # numpy scalars of mmseg's IoUMetric included
        except (TypeError, ValueError):
            pass
    return out


def train_iterations(cfg, model, iters, seed=0):
    """``iters`` training steps of ``model`` (``train_step`` on
    ``cfg.train_dataloader`` with the optimizer of ``cfg.optim_wrapper`` at
    its base learning rate: constant, no warm-up, no hooks). The fine-tune
    of the pruned model (it starts trained)."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.runner import Runner
    with _in_scope(cfg), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        loader = Runner.build_dataloader(copy.deepcopy(cfg.train_dataloader), seed=seed)
        optim_wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
        model.train()
        done = 0
        while done < iters:
            for data in loader:
                model.train_step(data, optim_wrapper)
                done += 1
                if done == iters:
                    break
    model.eval()
    return model


def save_checkpoint(state_dict, path, meta=None):
    """mmengine's checkpoint layout (``meta`` and ``state_dict``)."""
    torch.save(dict(meta=dict(meta or {}),
                    state_dict={k: v.detach().cpu() for k, v in state_dict.items()}), path)


@dataclasses.dataclass
class PruneResult:
    """What :func:`run_pruning` did: settings, per-layer plans, files and
    the before / after rows (params, FLOPs, latency, metrics)."""

    config: str
    checkpoint: str
    settings: dict
    plans: list
    coupled: list
    files: dict
    rows: list
    calib_batches: int
    notes: list = dataclasses.field(default_factory=list)

    def to_dict(self):
        d = dataclasses.asdict(self)
        d['plans'] = [p.to_dict() for p in self.plans]
        return d


def resolve_settings(cfg, threshold=None, calib_batches=None, ratio=None, finetune_iters=None):
    """Command-line values over the config's ``pruning = dict(...)`` over
    the defaults.

    Raises:
        MMExtError: An unknown key in ``pruning``, or a bad value.
    """
    section = dict(cfg.get('pruning') or {})
    known = {'threshold', 'calib_batches', 'ratio', 'finetune_iters'}
    unknown = sorted(set(section) - known)
    if unknown:
        raise MMExtError(f"pruning = dict(...) has unknown key(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(known))}")
    s = dict(threshold=DEFAULT_THRESHOLD, calib_batches=DEFAULT_CALIB_BATCHES, ratio=1.0,
             finetune_iters=0)
    s.update(section)
    given = dict(threshold=threshold, calib_batches=calib_batches, ratio=ratio,
                 finetune_iters=finetune_iters)
    s.update({k: v for k, v in given.items() if v is not None})
    if isinstance(s['ratio'], (list, tuple)) and len(s['ratio']) == 1:
        s['ratio'] = s['ratio'][0]
    if int(s['calib_batches']) < 1 or int(s['finetune_iters']) < 0:
        raise MMExtError('--calib-batches must be >= 1 and --finetune-iters >= 0')
    if not 0 < float(s['threshold']) < 1:
        raise MMExtError(f"--threshold must be in (0, 1), got {s['threshold']}")
    return s


def _metric(metrics):
    for key in ('coco/bbox_mAP', 'coco/segm_mAP', 'mIoU'):
        if key in metrics:
            return key, metrics[key]
    return None, None


def run_pruning(config, checkpoint, out_dir, threshold=None, calib_batches=None, ratio=None,
                finetune_iters=None, embedded=None, data_root=None, cfg_options=None,
                shape=None, repeats=10, warmup=3, evaluate_metrics=True, latency=True):
    """Estimate, prune, export, optionally fine-tune, and measure before /
    after. Writes into ``out_dir``: ``pruned_config.py``, ``pruned.pth``
    (``pruned_finetuned.pth`` with fine-tuning), ``report.md`` and
    ``report.json``.

    Args:
        config (str): Config of the trained model (file or ``mmext::`` name).
        checkpoint (str): Its weights.
        embedded (str, optional): ``'demo'`` / ``'smoke'``: calibrate,
            fine-tune and evaluate on the embedded data (as tools/train.py
            --embedded).
        shape (tuple[int], optional): (H, W) of the latency / FLOP input;
            default the get_flops default of the library.
        repeats, warmup (int): Timed / untimed latency repeats.

    Returns:
        PruneResult

    Raises:
        MMExtError: An unsupported backbone or a bad setting (one line).
    """
    from mmext.utils.config import ensure_embedded_data, load_config, register_library
    cfg = load_config(config, cfg_options, embedded, data_root)
    lib = register_library(cfg)
    ensure_embedded_data(cfg)
    settings = resolve_settings(cfg, threshold, calib_batches, ratio, finetune_iters)
    export_type = backbone_type(cfg.model.backbone, lib)
    os.makedirs(out_dir, exist_ok=True)
    out_dir = osp.abspath(out_dir)

    model = build_model(cfg)
    state = read_state_dict(checkpoint)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise MMExtError(f'{checkpoint} does not match {config}: {len(missing)} missing, '
                         f'{len(unexpected)} unexpected keys (e.g. '
                         f'{(list(missing) + list(unexpected))[0]})')
    backbone = model.backbone
    layers = prunable_convs(backbone)
    grams, used, positions = calibration_grams(cfg, model, layers,
                                               int(settings['calib_batches']))
    plans = plan_pruning(layers, grams, float(settings['threshold']), settings['ratio'],
                         positions)
    notes = []
    if used < int(settings['calib_batches']):
        notes.append(f"the train dataloader has {used} batches, not {settings['calib_batches']}")
    for p in plans:
        if p.rank is None:
            notes.append(f'{p.name}: zero gradient over the calibration batches, no estimate, '
                         'left alone')
    limited = [p.name for p in plans if p.data_limited]
    if limited:
        notes.append(f"{', '.join(limited)}: the calibration gave at most C_out output "
                     'positions (images x H x W), which bounds the rank; not pruned (raise '
                     '--calib-batches or the image size)')

    pruned_ckpt = osp.join(out_dir, 'pruned.pth')
    pruned_state = prune_state_dict(model.state_dict(), layers, plans)
    save_checkpoint(pruned_state, pruned_ckpt,
                    dict(pruned_from=osp.abspath(checkpoint), config=config))
    new_cfg = pruned_config(cfg, plans, backbone, pruned_ckpt)
    # The export is checked here: it builds and the pruned weights load strictly.
    build_model(new_cfg).load_state_dict(pruned_state, strict=True)
    pruned_cfg_path = osp.join(out_dir, 'pruned_config.py')
    new_cfg.dump(pruned_cfg_path)
    files = dict(config=pruned_cfg_path, checkpoint=pruned_ckpt)

    pruned_model = build_model(new_cfg)
    pruned_model.load_state_dict(pruned_state, strict=True)
    rows = [dict(model='original'), dict(model='pruned')]
    metrics = []
    if evaluate_metrics:
        metrics += [evaluate(cfg, model), evaluate(new_cfg, pruned_model)]
    iters = int(settings['finetune_iters'])
    if iters:
        train_iterations(new_cfg, pruned_model, iters)
        tuned = osp.join(out_dir, 'pruned_finetuned.pth')
        save_checkpoint(pruned_model.state_dict(), tuned,
                        dict(pruned_from=osp.abspath(checkpoint), finetune_iters=iters))
        files['finetuned_checkpoint'] = tuned
        rows.append(dict(model=f'pruned + {iters} it fine-tune'))
        if evaluate_metrics:
            metrics.append(evaluate(new_cfg, pruned_model))
    for row, m in zip(rows, metrics):
        row['metric'], row['value'] = _metric(m)
    work_dir = osp.join(out_dir, 'work')
    os.makedirs(work_dir, exist_ok=True)
    original_cfg_path = osp.join(work_dir, 'original_config.py')
    cfg.dump(original_cfg_path)
    _costs(rows, [(original_cfg_path, model.state_dict()), (pruned_cfg_path, pruned_state)],
           lib, shape, repeats, warmup, latency)
    shown = dict(settings, ratio=settings['ratio'], export=export_type)
    result = PruneResult(config=config, checkpoint=checkpoint, settings=shown, plans=plans,
                         coupled=coupled_channels(backbone), files=files, rows=rows,
                         calib_batches=used, notes=notes)
    files.update(report_md=osp.join(out_dir, 'report.md'),
                 report_json=osp.join(out_dir, 'report.json'))
    with open(files['report_json'], 'w', encoding='utf-8') as f:
        json.dump(result.to_dict(), f, indent=2)
    with open(files['report_md'], 'w', encoding='utf-8') as f:
        f.write(render(result))
    return result


def _costs(rows, models, lib, shape, repeats, warmup, latency):
    """Params, FLOPs and latency of the original and the pruned model
    (``(config path, state dict)`` each; the benchmark's interleaved timing
    and FLOP count, with the weights loaded so that post-processing sees the
    trained model's detections). The whole model's latency includes the
    post-processing (NMS), whose work depends on what the weights detect, so
    the backbones alone (``model.backbone(x)``) are timed too. The fine-tuned
    row has the pruned one's costs."""
    from .benchmark import benchmark_subjects, build_subject, parse_reference
    from .model_complexity import DEFAULT_SHAPES
    shape = tuple(shape or DEFAULT_SHAPES[lib])

    def subjects(backbone_only):
        out = []
        for path, state in models:
            subject = build_subject(parse_reference(path), backbone_only=backbone_only)
            if backbone_only:
                state = {k[len('backbone.'):]: v for k, v in state.items()
                         if k.startswith('backbone.')}
            subject.model.load_state_dict(state, strict=True)
            out.append(subject)
        return out

    if latency:
        kwargs = dict(shape=shape, repeats=repeats, warmup=warmup, machine=False,
                      progress=False)
        whole = benchmark_subjects(subjects(False), **kwargs).models
        backbone = benchmark_subjects(subjects(True), **kwargs).models
        stats = [(m.params, m.flops, m.infer.median, b.infer.median)
                 for m, b in zip(whole, backbone)]
    else:
        stats = []
        x = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(0))
        for s in subjects(False):
            s.model.eval()
            stats.append((sum(p.numel() for p in s.model.parameters()),
                          s.count_flops(x)[0], None, None))
    for i, row in enumerate(rows):
        params, flops, ms, backbone_ms = stats[min(i, 1)]
        row.update(params=params, flops=flops, latency_ms=ms, backbone_latency_ms=backbone_ms,
                   shape=list(shape))


def render(result):
    """The Markdown report of a :class:`PruneResult`."""
    from .model_complexity import format_gflops, format_mparams, markdown_table
    s = result.settings
    lines = ['# Gradient-matrix pruning report', '',
             f'- config: `{result.config}`', f'- checkpoint: `{result.checkpoint}`',
             f"- threshold tau: {s['threshold']}; ratio: {s['ratio']}; calibration batches: "
             f"{result.calib_batches}; fine-tune iterations: {s['finetune_iters']}",
             f"- export: `{s['export']}` with `mid_channels`; files: "
             + ', '.join(f'`{osp.basename(v)}`' for v in result.files.values()), '']
    base = result.rows[0]
    table = []
    for row in result.rows:
        ms, bms = row.get('latency_ms'), row.get('backbone_latency_ms')
        value = row.get('value')
        table.append([
            row['model'], format_mparams(row['params']), format_gflops(row['flops']),
            '-' if ms is None else f'{ms:.2f}', '-' if bms is None else f'{bms:.2f}',
            '-' if value is None else f"{row['metric']} {value:.4f}",
            f"{row['params'] / base['params']:.3f} / {row['flops'] / base['flops']:.3f}"])
    shape = base.get('shape')
    lines += ['## Before / after', '',
              markdown_table(['model', 'params (M)', f'FLOPs (G, {shape[0]}x{shape[1]})',
                              'latency ms/img (median)', 'backbone ms/img (median)', 'metric',
                              'params / FLOPs ratio'], table), '',
              'Latency: interleaved runs of the original and the pruned model on this machine '
              "(mmext's benchmark, trained weights). The whole model's figure includes the "
              'post-processing (NMS), whose work follows what the weights detect; the '
              "backbone's is the pruned part alone. The fine-tuned model has the pruned one's "
              'costs.', '']
    layer_rows = [[p.name, p.out_channels, '-' if p.positions is None else p.positions,
                   '-' if p.rank is None else p.rank,
                   '-' if p.rho is None else f'{p.rho:.3f}', p.max_prune,
                   f'{p.n_prune} (data-limited)' if p.data_limited else p.n_prune,
                   len(p.keep)] for p in result.plans]
    total = sum(p.out_channels for p in result.plans)
    pruned = sum(p.n_prune for p in result.plans)
    lines += ['## Layers', '',
              f'{pruned} of {total} filters of the prunable convolutions removed.', '',
              markdown_table(['conv', 'C_out', 'positions', 'rank r', 'rho = 1 - r/C_out',
                              'max = floor(rho C_out)', 'pruned', 'kept'], layer_rows), '',
              '## Left alone (residual-coupled)', '']
    lines += [f'- {line}' for line in result.coupled]
    if result.notes:
        lines += ['', '## Notes', ''] + [f'- {n}' for n in result.notes]
    return '\n'.join(lines) + '\n'
