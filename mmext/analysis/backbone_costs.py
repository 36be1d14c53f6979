"""Parameters and FLOPs of the backbone of a config, and the Markdown tables of
``docs/designs/`` that show them.

A table in a Markdown file lives between two markers; the begin marker names
the configs of its rows, in order, relative to the repository root::

    <!-- backbone-costs:begin configs/resnet/retinanet_r50_fpn_1x_coco.py configs/se/... -->
    (generated table)
    <!-- backbone-costs:end -->

:func:`update_markdown` regenerates everything between the markers and
:func:`check_docs` reports the files whose committed tables differ from a fresh
computation. ``tools/analysis_tools/backbone_costs.py`` is the command line.

FLOPs come from :func:`mmext.analysis.flops.count_flops`:
:class:`mmengine.analysis.FlopAnalyzer` (a ``torch.jit`` trace; one
multiply-add counts as one FLOP, elementwise operations are not counted) with
mmext's handles for fused attention, FFTs and per-sample kernel modulation. Dynamic convolutions run all samples of a batch as one grouped
convolution; at batch 1 that is exactly the per-sample cost, plus whatever the
attention branches contribute to the trace.
"""
import copy
import dataclasses
import difflib
import functools
import glob
import os.path as osp
import re
import warnings
from importlib import import_module

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DOCS_GLOB = osp.join('docs', 'designs', '*.md')
INPUT_SHAPE = (1, 3, 224, 224)
IMAGENET_CLASSES = 1000

BEGIN = '<!-- backbone-costs:begin'
END = '<!-- backbone-costs:end -->'
# The begin marker on its own line, then anything up to the end marker.
_BLOCK = re.compile(
    r'^(?P<begin><!-- backbone-costs:begin(?P<paths>[^\n]*?)-->)[ \t]*\n(?P<body>.*?)^'
    + re.escape(END), re.S | re.M)


@dataclasses.dataclass(frozen=True)
class BackboneCost:
    """Cost of the ``model.backbone`` of one config.

    Attributes:
        config (str): The config path as given.
        backbone (str): ``type`` (and ``-depth`` when set) of the backbone config.
        params (int): Parameters of the backbone, frozen ones included.
        flops (int): FLOPs (multiply-adds) at :data:`INPUT_SHAPE`.
        out_channels (int): Channels of the last feature map it returns.
        uncounted_ops (tuple[str]): Traced ops that the counter has no
            handle for (counted as 0), sorted.
    """

    config: str
    backbone: str
    params: int
    flops: int
    out_channels: int
    uncounted_ops: tuple = ()

    @property
    def classifier_params(self):
        """An ImageNet classifier (linear layer on the pooled last stage)."""
        return self.out_channels * IMAGENET_CLASSES + IMAGENET_CLASSES

    @property
    def imagenet_params(self):
        """Parameters of the backbone as an ImageNet classifier, the unit of
        the papers' parameter counts."""
        return self.params + self.classifier_params


def _resolve(config, root):
    return config if osp.isabs(config) else osp.join(root or ROOT, config)


def build_backbone(config, root=None):
    """Build the ``model.backbone`` of a config through its library's registry
    (mmdet's for detection configs, mmseg's for segmentation ones).

    Returns:
        tuple: ``(backbone module, backbone config dict)``.
    """
    import mmext  # noqa: F401  (stack fixes, the mmext scope)
    from mmengine.registry import DefaultScope

    from mmext.utils.config import load_config, register_library
    cfg = load_config(_resolve(config, root))
    with warnings.catch_warnings():
        # Switching between mmdet and mmseg configs in one process makes the
        # libraries warn that the default scope changes; it is set below.
        warnings.simplefilter('ignore')
        lib = register_library(cfg)
    backbone_cfg = copy.deepcopy(cfg.model.backbone)
    registry = import_module(f'{lib}.registry').MODELS
    with DefaultScope.overwrite_default_scope(lib):
        model = registry.build(copy.deepcopy(backbone_cfg))
    return model, backbone_cfg


def _label(backbone_cfg):
    for key in ('depth', 'arch'):
        value = backbone_cfg.get(key)
        if isinstance(value, (int, str)):
            return f"{backbone_cfg['type']}-{value}"
    return backbone_cfg['type']


def compute_cost(config, root=None, input_shape=INPUT_SHAPE):
    """Count parameters and FLOPs of the backbone of ``config`` (uncached).

    The backbone is built as the config says, untrained (no checkpoint is
    loaded), and traced in eval mode on one random image.
    """
    import torch

    from .flops import count_flops

    model, backbone_cfg = build_backbone(config, root)
    # mmdet's ResNet.train returns None, so no chaining.
    model.eval()
    x = torch.randn(input_shape, generator=torch.Generator().manual_seed(0))
    shapes = []

    def record_output(module, args, outs):
        outs = outs if isinstance(outs, (tuple, list)) else (outs, )
        shapes[:] = [tuple(o.shape) for o in outs]

    # The trace runs the forward once; its output gives the last stage's
    # channels without a second forward pass.
    handle = model.register_forward_hook(record_output)
    try:
        count = count_flops(model, (x, ))
    finally:
        handle.remove()
    flops, uncounted = count.total, count.uncounted_ops
    params = sum(p.numel() for p in model.parameters())
    return BackboneCost(config=config, backbone=_label(backbone_cfg), params=params,
                        flops=int(flops), out_channels=int(shapes[-1][1]),
                        uncounted_ops=uncounted)


@functools.lru_cache(maxsize=None)
def _cached_cost(path, config, input_shape):
    return compute_cost(path, None, input_shape)


def backbone_cost(config, root=None, input_shape=INPUT_SHAPE):
    """:func:`compute_cost`, cached per config file for the process (a
    baseline appears in many tables)."""
    cost = _cached_cost(osp.abspath(_resolve(config, root)), config, tuple(input_shape))
    return dataclasses.replace(cost, config=config)


def _m(n):
    return f'{n / 1e6:.2f}'


def _g(n):
    return f'{n / 1e9:.2f}'


def render_table(costs, input_shape=INPUT_SHAPE):
    """Markdown table of ``costs`` (a list of :class:`BackboneCost`); the
    differences are against the first row, the reference.

    Returns:
        str: The table and a note on the uncounted ops, ending in a newline.
    """
    if not costs:
        raise ValueError('a backbone-costs table needs at least one config')
    shape = 'x'.join(map(str, input_shape))
    lines = [
        f'| config | backbone | params (M) | params + ImageNet classifier (M) '
        f'| FLOPs (G, {shape}) | Δ params (M) | Δ FLOPs (G) |',
        '|---|---|---:|---:|---:|---:|---:|',
    ]
    ref = costs[0]
    for i, c in enumerate(costs):
        if i == 0:
            d_params = d_flops = 'reference'
        else:
            d_params = f'{(c.params - ref.params) / 1e6:+.2f}'
            d_flops = f'{(c.flops - ref.flops) / 1e9:+.2f}'
        lines.append(f'| `{c.config}` | {c.backbone} | {_m(c.params)} | '
                     f'{_m(c.imagenet_params)} | {_g(c.flops)} | {d_params} | {d_flops} |')
    common = set.intersection(*(set(c.uncounted_ops) for c in costs))
    note = ['', 'Traced ops without a FLOP handle (counted as 0): '
            + (', '.join(f'`{op}`' for op in sorted(common)) or 'none') + ' in every row']
    for c in costs:
        extra = sorted(set(c.uncounted_ops) - common)
        if extra:
            note.append(f'; `{c.config}` also ' + ', '.join(f'`{op}`' for op in extra))
    lines.append(note[0])
    lines.append(''.join(note[1:]) + '.')
    return '\n'.join(lines) + '\n'


def marker_configs(text):
    """The config lists of the tables of a Markdown text, in order.

    Raises:
        ValueError: On a begin marker without its end marker, or one that
            names no config.
    """
    blocks = list(_BLOCK.finditer(text))
    if text.count(BEGIN) != len(blocks) or text.count(END) != len(blocks):
        raise ValueError(f'unbalanced backbone-costs markers: {text.count(BEGIN)} begin, '
                         f'{text.count(END)} end, {len(blocks)} well-formed tables')
    lists = [m['paths'].split() for m in blocks]
    if not all(lists):
        raise ValueError('a backbone-costs:begin marker names no config')
    return lists


def update_markdown(text, cost_fn=backbone_cost):
    """Return ``text`` with every table between markers regenerated.

    Args:
        text (str): Markdown.
        cost_fn (callable): ``config path -> BackboneCost``.
    """
    marker_configs(text)  # validates the markers

    def table(match):
        costs = [cost_fn(p) for p in match['paths'].split()]
        return f"{match['begin']}\n{render_table(costs)}{END}"

    return _BLOCK.sub(table, text)


def doc_files(root=None):
    return sorted(glob.glob(osp.join(root or ROOT, DOCS_GLOB)))


def _cost_fn(root):
    return lambda p: backbone_cost(p, root)


def check_docs(files=None, root=None, cost_fn=None):
    """Unified diffs (``{file: diff}``) of the Markdown files whose committed
    tables differ from a fresh computation; empty when all are current."""
    cost_fn = cost_fn or _cost_fn(root)
    stale = {}
    for path in files or doc_files(root):
        with open(path, encoding='utf-8') as f:
            old = f.read()
        new = update_markdown(old, cost_fn)
        if new != old:
            rel = osp.relpath(path, root or ROOT)
            stale[path] = ''.join(difflib.unified_diff(
                old.splitlines(True), new.splitlines(True), f'a/{rel}', f'b/{rel}'))
    return stale


def update_docs(files=None, root=None, cost_fn=None):
    """Regenerate the tables in place; returns the files that changed."""
    cost_fn = cost_fn or _cost_fn(root)
    changed = []
    for path in files or doc_files(root):
        with open(path, encoding='utf-8') as f:
            old = f.read()
        new = update_markdown(old, cost_fn)
        if new != old:
            with open(path, 'w', encoding='utf-8') as f:
                f.write(new)
            changed.append(path)
    return changed
