"""Params and FLOPs of a whole detector / segmentor config, module by module:
the work behind ``tools/analysis_tools/get_flops.py``.

The model is built exactly as the config says (random weights, no
checkpoint), put in eval mode and traced once on one image of the requested
shape through its tensor forward (``model._forward``, what mmdet's and
mmseg's own ``get_flops.py`` count): the backbone, the neck and the heads,
without the data preprocessor and post-processing (NMS, resizing of the
predictions). FLOPs come from :func:`mmext.analysis.flops.count_flops`, so
they equal the docs tables' and the benchmark's at the same shape.

Two-stage detectors run their RoI heads on the proposals the RPN keeps for
this input, and an untrained RPN keeps what its random scores give; the
report says how many RoIs each RoI head ran on, since their FLOPs scale with
that number. A segmentor's auxiliary head is a training-time loss only: its
parameters are listed, its FLOPs are not in the inference forward.

A model with low-bit modules (declaring ``weight_bits`` / ``activation_bits``,
:mod:`mmext.analysis.low_bit`) also gets, per row, its effective size at the
real bit-widths, its full-precision FLOPs and its BOPs; the FLOPs column is
unchanged (every multiply-add one FLOP).
"""
import dataclasses
import json
import warnings

import torch

from mmext.utils.errors import MMExtError

from .low_bit import (LowBitCounter, effective_bytes, format_gbops, format_mbytes,
                      precision_summary)

#: Default input (H, W) per library: the test scale of mmdet's COCO configs
#: (1333x800, a 5:3 image) and the crop of mmseg's ADE20K configs.
DEFAULT_SHAPES = {'mmdet': (800, 1333), 'mmseg': (512, 512)}


@dataclasses.dataclass
class ModuleRow:
    """One top-level module of the model (or the whole of it)."""

    name: str
    type: str
    params: int
    flops: int
    note: str = ''
    low_bit_macs: int = 0
    bops: int = 0
    effective_bytes: int = None

    @property
    def full_precision_flops(self):
        return self.flops - self.low_bit_macs


@dataclasses.dataclass
class Complexity:
    """Params and FLOPs of a config at one input shape.

    Attributes:
        config (str): The config path as given.
        shape (tuple[int]): Input (H, W).
        model_type (str): Class of the built model.
        rows (list[ModuleRow]): The model's top-level modules, in order.
        total (ModuleRow): The whole model.
        by_operator (dict[str, int]): FLOPs per traced op (mmext's handles
            included: ``scaled_dot_product_attention``, ``fft_*``,
            ``dynamic_kernel``).
        uncounted_ops (tuple[str]): Traced ops without a handle (0 FLOPs).
        notes (list[str]): What the figures depend on.
        low_bit (list[dict]): One per low-bit module of the model: ``name``,
            ``type``, ``weight_bits``, ``activation_bits``, ``macs`` and
            ``bops`` of this forward (0 for one that did not run); empty for
            a full-precision model.
    """

    config: str
    shape: tuple
    model_type: str
    rows: list
    total: ModuleRow
    by_operator: dict
    uncounted_ops: tuple
    notes: list
    low_bit: list = dataclasses.field(default_factory=list)

    @property
    def has_low_bit(self):
        return bool(self.low_bit)

    def row(self, name):
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_dict(self):
        return dataclasses.asdict(self)


# The handles mmext adds, for the line that says what they contributed.
_MMEXT_OPS = ('scaled_dot_product_attention', 'dynamic_kernel')


def _mmext_share(by_operator):
    return {op: v for op, v in sorted(by_operator.items())
            if v and (op in _MMEXT_OPS or op.startswith('fft_'))}


def _label(module, cfg):
    name = type(module).__name__
    if isinstance(cfg, dict):
        for key in ('depth', 'arch'):
            value = cfg.get(key)
            if isinstance(value, (int, str)):
                return f'{name}-{value}'
    return name


def _params(module):
    return sum(p.numel() for p in module.parameters())


def _roi_counters(model):
    """Forward hooks counting the RoIs each RoI head of a two-stage detector
    runs on during the trace; returns ``(counts, handles)``."""
    counts, handles = {}, []
    roi_head = getattr(model, 'roi_head', None)
    if roi_head is None:
        return counts, handles
    for name, module in roi_head.named_children():
        if not name.endswith('_head'):
            continue

        def hook(module, args, output, name=name):
            counts[f'roi_head.{name}'] = int(args[0].shape[0])

        handles.append(module.register_forward_hook(hook))
    return counts, handles


def model_complexity(config, shape=None, backbone_only=False, cfg_options=None, root=None):
    """Params and FLOPs of ``config`` at input ``shape`` (H, W).

    Args:
        config (str): Config path.
        shape (tuple[int], optional): Input (H, W); default
            :data:`DEFAULT_SHAPES` of the config's library, 224x224 for
            ``backbone_only``.
        backbone_only (bool): Trace ``model.backbone`` alone (its FLOPs equal
            the backbone row of the whole model's report).
        cfg_options (dict, optional): Overrides of config keys.

    Returns:
        Complexity

    Raises:
        MMExtError: For a bad shape, a timm name, or a model that cannot be
            traced (with the reason).
    """
    # Imported here: benchmark.py uses this module's formatters.
    from .benchmark import build_subject, parse_reference
    ref = parse_reference(config, root)
    if ref.kind != 'config':
        raise MMExtError(f'get_flops takes a config file, not a timm model ({ref.label}); '
                         'benchmark.py counts timm models too')
    subject = build_subject(ref, backbone_only=backbone_only, root=root,
                            cfg_options=cfg_options)
    lib = subject.kind
    if shape is None:
        shape = (224, 224) if backbone_only else DEFAULT_SHAPES[lib]
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or min(shape) < 1:
        raise MMExtError(f'--shape takes H W (or one size for a square), got {shape}')
    x = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(0))
    model = subject.model
    counts, hooks = _roi_counters(model) if lib != 'tensor' else ({}, [])
    # Names relative to ``model`` (the benchmark may trace a wrapper of it).
    low_bit = LowBitCounter(model)
    try:
        with warnings.catch_warnings(), low_bit:
            warnings.simplefilter('ignore')
            count = subject.flop_count(x)
    except Exception as exc:  # noqa: B902  (any trace failure -> one clear error)
        line = (str(exc).splitlines() or [''])[0][:200]
        raise MMExtError(f'could not trace {config} at {shape[0]}x{shape[1]}: '
                         f'{type(exc).__name__}: {line}') from exc
    finally:
        for h in hooks:
            h.remove()

    notes = []
    rows = []

    def low_bit_fields(name, module):
        return dict(low_bit_macs=low_bit.macs(name), bops=low_bit.bops(name),
                    effective_bytes=effective_bytes(module))

    if backbone_only:
        total = ModuleRow('backbone', _label(model, subject.model_cfg), _params(model),
                          count.total, **low_bit_fields('', model))
        rows.append(total)
        model_type = type(model).__name__
    else:
        model_cfg = subject.model_cfg
        for name, child in model.named_children():
            if name == 'data_preprocessor':
                continue
            note = ''
            if name == 'auxiliary_head':
                note = 'training-time loss only, not in the inference forward'
            rows.append(ModuleRow(name, _label(child, model_cfg.get(name)), _params(child),
                                  count.of(name), note, **low_bit_fields(name, child)))
        if counts:
            ran = ', '.join(f'{head} on {n}' for head, n in sorted(counts.items()))
            notes.append(f'RoI heads ran {ran} RoIs: the proposals the untrained RPN kept for this '
                         "input (at most its test_cfg max_per_img; mmdet's tensor forward gives a "
                         'mask head the first 100). Their FLOPs scale with these numbers.')
        total = ModuleRow('total', type(model).__name__, _params(model), count.total,
                          **low_bit_fields('', model))
        model_type = type(model).__name__
    unaccounted = total.flops - sum(r.flops for r in rows)
    if rows and unaccounted and not backbone_only:
        # mmdet / mmseg tensor forwards call ``head.forward`` directly, so
        # the ops a head runs itself (not in a submodule, e.g. UPerHead's
        # resizes) are scoped to no child.
        rows.append(ModuleRow('(outside child modules)', '', 0, unaccounted,
                              "ops a head's forward runs itself, e.g. resizes"))
    layers = []
    for name, module, wb, ab in low_bit.modules:
        ops = low_bit.layers.get(name)
        macs = ops.macs if ops else 0
        layers.append(dict(name=name, type=type(module).__name__, weight_bits=wb,
                           activation_bits=ab, macs=macs, bops=macs * wb * ab))
    return Complexity(config=config, shape=shape, model_type=model_type, rows=rows,
                      total=total, by_operator=dict(count.by_operator),
                      uncounted_ops=tuple(count.uncounted_ops), notes=notes, low_bit=layers)


def format_gflops(flops, digits=2):
    """FLOPs as billions with ``digits`` decimals (``'4.11'`` for 4.107e9),
    the unit of every FLOPs column of mmext's tables and reports (the
    benchmark keeps three: its A/B row compares near-equal models)."""
    return f'{flops / 1e9:.{digits}f}'


def format_mparams(params):
    """Parameters as millions with two decimals."""
    return f'{params / 1e6:.2f}'


def markdown_table(header, rows, align=None):
    """A GitHub Markdown table by prettytable's MARKDOWN style.

    Args:
        header (list[str]): Column names.
        rows (list[list]): Cells (``str()`` of each); ``|`` is escaped and a
            newline becomes a space, so a cell never breaks the table.
        align (str, optional): One of ``l`` / ``r`` / ``c`` per column
            (default: all left).

    Returns:
        str: The table, without a final newline.
    """
    from prettytable import PrettyTable, TableStyle

    def cell(value):
        return str(value).replace('|', '\\|').replace('\n', ' ')

    table = PrettyTable([cell(h) for h in header])
    table.set_style(TableStyle.MARKDOWN)
    for name, a in zip(table.field_names, align or 'l' * len(header)):
        table.align[name] = a
    table.add_rows([[cell(v) for v in row] for row in rows])
    return table.get_string()


def render(result):
    """Markdown report of a :class:`Complexity`."""
    h, w = result.shape
    low = result.has_low_bit
    rows = []
    for r in result.rows + ([result.total] if result.total not in result.rows else []):
        share = f'{100 * r.flops / result.total.flops:.1f}%' if result.total.flops else '-'
        name = f'**{r.name}**' if r is result.total else r.name
        if low:
            size = format_mbytes(r.effective_bytes) if r.effective_bytes is not None else '-'
            rows.append([name, r.type, format_mparams(r.params), size, format_gflops(r.flops),
                         format_gflops(r.full_precision_flops), format_gbops(r.bops), share,
                         r.note])
        else:
            rows.append([name, r.type, format_mparams(r.params), format_gflops(r.flops), share,
                         r.note])
    if low:
        header = ['module', 'type', 'params (M)', 'size (MB)', 'FLOPs (G)',
                  'full-precision FLOPs (G)', 'BOPs (G)', 'share of FLOPs', 'note']
        align = 'llrrrrrrl'
    else:
        header = ['module', 'type', 'params (M)', 'FLOPs (G)', 'share of FLOPs', 'note']
        align = 'llrrrl'
    lines = [f'# {result.config}', '',
             f'Input 1x3x{h}x{w}, {result.model_type}, eval mode, tensor forward '
             '(no data preprocessor, no post-processing). One multiply-add = one FLOP.', '',
             markdown_table(header, rows, align), '']
    if low:
        lines.append(
            'Low-bit modules (declaring `weight_bits` / `activation_bits`): '
            f'{precision_summary((d["weight_bits"], d["activation_bits"]) for d in result.low_bit)}'
            '. FLOPs count their multiply-adds too (the simulated forward runs them in FP32); '
            'full-precision FLOPs leave them out; BOPs = MACs x weight_bits x activation_bits; '
            'size at the real bit-widths (low-bit weights at weight_bits, the rest at 32 bits; '
            f'all FP32: {format_mbytes(4 * result.total.params)} MB).')
    added = _mmext_share(result.by_operator)
    if added:
        lines.append('Counted by mmext\'s handles (mmengine has none): ' + ', '.join(
            f'`{op}` {format_gflops(v)} G' for op, v in added.items()) + '.')
    lines.append('Traced ops without a FLOP handle (counted as 0): '
                 + (', '.join(f'`{op}`' for op in result.uncounted_ops) or 'none') + '.')
    for note in result.notes:
        lines.append(f'- {note}')
    return '\n'.join(lines) + '\n'


def write_json(result, path):
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(result.to_dict(), f, indent=2)
