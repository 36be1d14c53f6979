"""Generate ``docs/model_zoo.md``: one row per config, from the repository
(repository maintenance, not part of the mmext package).

    python .dev_scripts/model_zoo.py            # (re)write docs/model_zoo.md
    python .dev_scripts/model_zoo.py --check    # exit 1 + diff if it is stale
    python .dev_scripts/model_zoo.py --record work_dirs/compare/leaderboard/local_results.yml
                                                # add a comparison's figures, then regenerate

The same run also regenerates (or, with --check, checks) the ``local-results``
blocks of docs/*.md and docs/designs/*.md.

Every config under ``configs/<design>/`` (``configs/_base_`` excluded) gets a
row, grouped by design folder and then by pipeline (RetinaNet, Mask R-CNN,
UperNet, other). A row carries three kinds of numbers, never typed into the
page by hand:

- **computed**: parameters and FLOPs of ``model.backbone`` at 1x3x224x224
  (and, in a table with a low-bit backbone, size at the real bit-widths,
  full-precision FLOPs and BOPs: :mod:`mmext.analysis.low_bit`),
  by :func:`mmext.analysis.backbone_costs.backbone_cost` (mmengine's
  FlopAnalyzer with mmext's handles). Configs whose backbone dicts are equal (up to the keys that
  cannot change the count, :data:`COST_NEUTRAL_KEYS`) share one computation;
- **published**: from :data:`PUBLISHED_FILE`, a mapping
  ``config path -> [{metric, value, source}, ...]``; every entry needs its
  source. An entry whose figure could not be traced to its source carries
  ``unverified: <what was checked>`` and is shown marked as such;
- **local**: from :data:`LOCAL_FILE`, a list of run sets, each with the date,
  seed, machine, commit and command of its runs and
  ``results: {config path: {metric: value}}``; a set that
  ``compare.py --resources`` measured also has ``resources: {config path:
  {peak_train_mib, train_step_mib, latency_ms, ...}}`` (:data:`RESOURCE_KEYS`).
  Other docs pages show a run set through a generated block
  (:func:`update_local_blocks`), so each local figure is typed once, in that
  file.

The page ends with the **resource view**: one table per pipeline over every
config, the computed columns (params, FLOPs, size, full-precision FLOPs,
BOPs) next to the measured ones (peak training memory, latency, accuracy) of
the newest run set with ``resources`` for the config, or "not measured". It
adds no computation: the costs are the rows' own.

:func:`render_page` is a pure function of its inputs (rows sorted, fixed
number formatting), so ``--check`` can compare the committed page byte for
byte.
"""
import argparse
import dataclasses
import difflib
import glob
import json
import os.path as osp
import re
import sys
import time

from mmext.analysis.backbone_costs import INPUT_SHAPE, backbone_cost
from mmext.analysis.low_bit import format_gbops, format_mbytes
from mmext.analysis.model_complexity import format_gflops, format_mparams, markdown_table
from mmext.utils.errors import MMExtError, friendly_errors

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PAGE = osp.join('docs', 'model_zoo.md')
PUBLISHED_FILE = osp.join('docs', 'published.yml')
LOCAL_FILE = osp.join('docs', 'local_results.yml')
TOOL = '.dev_scripts/model_zoo.py'

PIPELINES = ('RetinaNet', 'Mask R-CNN', 'UperNet', 'other')
# Backbone keys that change neither the parameter count nor the eval-mode
# trace: weights to load, training-time regularisation and freezing.
COST_NEUTRAL_KEYS = ('init_cfg', 'pretrained', 'drop_path_rate', 'frozen_stages', 'norm_eval',
                     'with_cp')
PUBLISHED_KEYS = ('metric', 'value', 'source')
# Optional: the reason a figure is shown although it could not be traced to
# its source (the page marks it and lists the reasons).
PUBLISHED_OPTIONAL_KEYS = ('unverified', )
LOCAL_RUN_KEYS = ('date', 'seed', 'machine', 'commit', 'command')
# Measured resources a local run set may carry per config (written by
# mmext.analysis.leaderboard.local_run_set): unit and column.
RESOURCE_KEYS = {
    'peak_train_mib': 'peak train memory (MiB, local)',
    'train_step_mib': 'train step (MiB, local)',
    'cuda_max_allocated_mib': 'CUDA max allocated (MiB, local)',
    'latency_ms': 'latency (ms/img, local)',
}
NOT_MEASURED = 'not measured'


@dataclasses.dataclass(frozen=True)
class ZooConfig:
    """What the page needs to know of one config file.

    Attributes:
        path (str): Relative to the repository root, ``/``-separated.
        design (str): The folder under ``configs/``.
        pipeline (str): One of :data:`PIPELINES`.
        cost_key (str): Equal for configs whose backbones cost the same.
    """

    path: str
    design: str
    pipeline: str
    cost_key: str


@dataclasses.dataclass(frozen=True)
class Row:
    config: ZooConfig
    backbone: str
    params: int
    imagenet_params: int
    flops: int
    published: tuple = ()  # ({metric, value, source}, ...)
    local: tuple = ()  # ((run index, {metric: value}), ...)
    # The newest run set measuring this config's resources:
    # (run index, {resource: value}, {metric: value}); None: not measured.
    resources: tuple = None
    # mmext.analysis.low_bit: nonzero low_bit_layers for a low-bit backbone.
    low_bit_layers: int = 0
    low_bit_macs: int = 0
    bops: int = 0
    effective_bytes: int = None


# --------------------------------------------------------------------------
# configs


def list_configs(root=REPO):
    """Config files under ``configs/<design>/`` (any depth), ``_base_``
    folders excluded, sorted, relative to ``root`` with ``/``."""
    paths = glob.glob(osp.join(root, 'configs', '*', '**', '*.py'), recursive=True)
    rel = (osp.relpath(p, root).replace(osp.sep, '/') for p in paths)
    return sorted(p for p in rel if '_base_' not in p.split('/'))


def pipeline_of(model_cfg):
    """RetinaNet / Mask R-CNN / UperNet from the model dict, else ``other``."""
    kind = model_cfg.get('type', '')
    kind = kind.split('.')[-1] if isinstance(kind, str) else ''
    if kind == 'RetinaNet':
        return 'RetinaNet'
    if kind == 'MaskRCNN':
        return 'Mask R-CNN'
    head = model_cfg.get('decode_head') or {}
    head_type = head.get('type', '') if isinstance(head, dict) else ''
    if isinstance(head_type, str) and head_type.split('.')[-1] == 'UPerHead':
        return 'UperNet'
    return 'other'


def cost_key(library, backbone_cfg):
    """Canonical text of a backbone dict (and the library whose registry builds
    it) without :data:`COST_NEUTRAL_KEYS`."""
    cfg = {k: v for k, v in backbone_cfg.items() if k not in COST_NEUTRAL_KEYS}
    return json.dumps([library, cfg], sort_keys=True, default=repr)


def read_config(path, root=REPO):
    """:class:`ZooConfig` of a repository-relative config path."""
    from mmengine.config import Config

    from mmext.utils.config import library_of
    try:
        cfg = Config.fromfile(osp.join(root, path))
    except Exception as e:  # a broken config is named, not buried in a traceback
        raise MMExtError(f'cannot read {path}: {type(e).__name__}: {e}') from e
    model = cfg.get('model')
    if not model or 'backbone' not in model:
        raise MMExtError(f'{path} has no model.backbone; the model zoo lists detectors '
                         'and segmentors with a backbone')
    backbone = model['backbone'].to_dict() if hasattr(model['backbone'], 'to_dict') \
        else dict(model['backbone'])
    try:
        library = library_of(cfg)
    except ValueError as e:
        raise MMExtError(f'{path}: {e}') from e
    return ZooConfig(path=path, design=path.split('/')[1], pipeline=pipeline_of(model),
                     cost_key=cost_key(library, backbone))


# --------------------------------------------------------------------------
# metadata


def _load_mapping(path):
    """YAML (or JSON, a subset) file -> object; a missing file is empty."""
    if not osp.isfile(path):
        return None
    import yaml
    with open(path, encoding='utf-8') as f:
        try:
            return yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise MMExtError(f'{path} is not valid YAML: {e}') from e


def _text(value):
    return value if isinstance(value, str) else str(value)


def validate_published(data, configs, name=PUBLISHED_FILE):
    """Check published metadata; returns ``{config: ({metric, value, source,
    unverified}, ...)}`` with every value a string (``unverified`` is '' for a
    figure traced to its source).

    Raises:
        MMExtError: On a config that is not in ``configs``, or an entry
            without its metric, value or source, with an ``unverified`` that
            does not say why, or with other keys.
    """
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MMExtError(f'{name}: expected a mapping config path -> list of entries')
    known = set(configs)
    out = {}
    for config, entries in data.items():
        if config not in known:
            raise MMExtError(f'{name}: {config!r} is not a config of the repository '
                             '(configs/<design>/..., not _base_)')
        if not isinstance(entries, list) or not entries:
            raise MMExtError(f'{name}: {config}: expected a non-empty list of '
                             '{metric, value, source}')
        checked = []
        for i, entry in enumerate(entries):
            where = f'{name}: {config}, entry {i + 1}'
            if not isinstance(entry, dict):
                raise MMExtError(f'{where}: expected a mapping with {", ".join(PUBLISHED_KEYS)}')
            allowed = PUBLISHED_KEYS + PUBLISHED_OPTIONAL_KEYS
            extra = sorted(set(entry) - set(allowed))
            if extra:
                raise MMExtError(f'{where}: unknown keys {extra}; allowed: {list(allowed)}')
            for key in PUBLISHED_KEYS:
                if entry.get(key) is None or not _text(entry[key]).strip():
                    raise MMExtError(f'{where}: no {key}; a published figure needs its '
                                     'metric, value and source')
            checked_entry = {k: _text(entry[k]).strip() for k in PUBLISHED_KEYS}
            checked_entry['unverified'] = ''
            if 'unverified' in entry:
                reason = entry['unverified']
                if not isinstance(reason, str) or not reason.strip():
                    raise MMExtError(f'{where}: unverified must say what was checked and not '
                                     f'found (a text), not {reason!r}')
                checked_entry['unverified'] = reason.strip()
            checked.append(checked_entry)
        out[config] = tuple(checked)
    return out


def validate_local(data, configs, name=LOCAL_FILE):
    """Check local-results metadata; returns a list of run sets
    ``{date, seed, machine, commit, command, note, results}`` with text fields.

    Raises:
        MMExtError: On a run set without one of :data:`LOCAL_RUN_KEYS`, a
            result for an unknown config, or a non-numeric value.
    """
    if data is None:
        return []
    runs = data.get('runs') if isinstance(data, dict) else None
    if not isinstance(runs, list):
        raise MMExtError(f'{name}: expected a mapping with a list under "runs"')
    known = set(configs)
    out = []
    for i, run in enumerate(runs):
        where = f'{name}: run set {i + 1}'
        if not isinstance(run, dict):
            raise MMExtError(f'{where}: expected a mapping')
        extra = sorted(set(run) - set(LOCAL_RUN_KEYS) - {'note', 'results', 'resources'})
        if extra:
            raise MMExtError(f'{where}: unknown keys {extra}')
        for key in LOCAL_RUN_KEYS:
            if run.get(key) is None or not _text(run[key]).strip():
                raise MMExtError(f'{where}: no {key}; local figures need the date, seed, '
                                 'machine, commit and command of their runs')
        results = run.get('results')
        if not isinstance(results, dict) or not results:
            raise MMExtError(f'{where}: expected "results: {{config path: {{metric: value}}}}"')
        checked = {}
        for config, metrics in results.items():
            if config not in known:
                raise MMExtError(f'{where}: {config!r} is not a config of the repository')
            if not isinstance(metrics, dict) or not metrics:
                raise MMExtError(f'{where}: {config}: expected {{metric: value}}')
            for metric, value in metrics.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise MMExtError(f'{where}: {config}: {metric} = {value!r} is not a number')
            checked[config] = dict(metrics)
        entry = {k: _text(run[k]).strip() for k in LOCAL_RUN_KEYS}
        entry['note'] = _text(run.get('note') or '').strip()
        entry['results'] = checked
        entry['resources'] = _validate_resources(run.get('resources'), checked, where)
        out.append(entry)
    return out


def _validate_resources(resources, results, where):
    """``{config: {resource: number}}`` of a run set (:data:`RESOURCE_KEYS`),
    each config also in its ``results`` (the accuracy of the same runs)."""
    if resources is None:
        return {}
    if not isinstance(resources, dict) or not resources:
        raise MMExtError(f'{where}: expected "resources: {{config path: {{resource: value}}}}"')
    for config, values in resources.items():
        if config not in results:
            raise MMExtError(f'{where}: resources of {config!r}, which has no results in this '
                             'run set; add its metrics or drop its resources')
        if not isinstance(values, dict) or not values:
            raise MMExtError(f'{where}: resources of {config}: expected {{resource: value}}')
        for key, value in values.items():
            if key not in RESOURCE_KEYS:
                raise MMExtError(f'{where}: resources of {config}: unknown {key!r}; known: '
                                 f'{", ".join(RESOURCE_KEYS)}')
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise MMExtError(f'{where}: resources of {config}: {key} = {value!r} is not a '
                                 'non-negative number')
    return {c: dict(v) for c, v in resources.items()}


def load_metadata(configs, root=REPO, published_file=None, local_file=None):
    """Read and validate both metadata files (missing files are empty)."""
    pub_path = published_file or osp.join(root, PUBLISHED_FILE)
    loc_path = local_file or osp.join(root, LOCAL_FILE)
    published = validate_published(_load_mapping(pub_path), configs,
                                   osp.relpath(pub_path, root))
    local = validate_local(_load_mapping(loc_path), configs, osp.relpath(loc_path, root))
    return published, local


# --------------------------------------------------------------------------
# rows


def build_rows(zoo_configs, published, local, cost_fn=None, progress=None):
    """One :class:`Row` per config; the backbone cost is computed once per
    distinct :attr:`ZooConfig.cost_key` (on the first config, in path order,
    that has it).

    Args:
        cost_fn (callable): ``config path -> BackboneCost``; default
            :func:`backbone_cost` at :data:`INPUT_SHAPE` from the repository.
        progress (callable): Called with no argument after each computation.
    """
    cost_fn = cost_fn or (lambda p: backbone_cost(p, root=REPO))
    costs = {}
    for zc in sorted(zoo_configs, key=lambda z: z.path):
        if zc.cost_key not in costs:
            costs[zc.cost_key] = cost_fn(zc.path)
            if progress:
                progress()
    rows = []
    for zc in zoo_configs:
        cost = costs[zc.cost_key]
        runs = tuple((i, run['results'][zc.path]) for i, run in enumerate(local)
                     if zc.path in run['results'])
        measured = [(i, run['resources'][zc.path], run['results'][zc.path])
                    for i, run in enumerate(local) if zc.path in run.get('resources', {})]
        rows.append(Row(config=zc, backbone=cost.backbone, params=cost.params,
                        imagenet_params=cost.imagenet_params, flops=cost.flops,
                        published=published.get(zc.path, ()), local=runs,
                        resources=measured[-1] if measured else None,
                        low_bit_layers=cost.low_bit_layers, low_bit_macs=cost.low_bit_macs,
                        bops=cost.bops, effective_bytes=cost.effective_bytes))
    return rows


def distinct_costs(zoo_configs):
    return len({zc.cost_key for zc in zoo_configs})


# --------------------------------------------------------------------------
# rendering


def _cell(text):
    """Text outside a table (markdown_table escapes its cells itself)."""
    return text.replace('|', '\\|').replace('\n', ' ')


def _number(value):
    if isinstance(value, int):
        return str(value)
    return f'{value:.2f}'


HEADER = """\
# Model zoo

<!-- Generated by `python {tool}` from configs/,
{published} and {local}; do not edit by hand.
`python {tool} --check` (tests/test_model_zoo.py) fails when this page is stale. -->

Every config of the repository, one row each, grouped by design folder and pipeline. Three
kinds of numbers appear, and each column says which kind it holds:

- **computed**: params and FLOPs of the config's `model.backbone` alone, built exactly as
  the config says (random weights) and counted by `mmengine.analysis.FlopAnalyzer` with
  mmext's handles for fused attention, FFTs and per-sample kernels
  (`mmext.analysis.flops`) on one {shape} image in eval mode; one multiply-add is one
  FLOP, elementwise operations count 0 (details and the uncounted ops per design in [designs/README.md](designs/README.md)).
  "+ cls" adds a 1000-class linear layer on the last feature map, the unit of the papers'
  ImageNet parameter counts. Params in millions, FLOPs in billions. A table with a low-bit
  backbone (modules declaring `weight_bits` / `activation_bits`: binary or k-bit
  convolutions) adds its size at the real bit-widths (MB), its full-precision FLOPs (FLOPs
  less the low-bit multiply-adds) and its BOPs (multiply-adds x weight bits x activation
  bits, in billions), defined in [analysis_tools.md](analysis_tools.md#low-bit-designs-bops-and-size).
  The tool computes them from the configs each time it runs; none is typed by hand;
- **published**: figures from the papers or the official model zoos, copied from the
  "published" tables of [designs/](designs/README.md) into `{published}` with their
  sources (numbered under [Published sources](#published-sources)); the metric names the
  dataset and setting of the figure. This repository has not reproduced them. A figure
  that could not be found in its source is marked **unverified** and listed, with what was
  checked, under [Unverified published figures](#unverified-published-figures);
- **local**: results of runs of this repository on its embedded data (not COCO, not
  ADE20K), from `{local}`; the date, seed, machine, commit and command of each set of
  runs are under [Local runs](#local-runs).

A dash means no figure of that kind. Published figures come from other counters and often
from another form of the network (an ImageNet classifier rather than a detector backbone);
compare designs by the computed columns, and by published figures only where the settings
match. The [resource view](#resource-view) at the end puts every config's computed costs
next to its measured peak training memory, latency and accuracy.
"""


def render_page(rows, published_name=PUBLISHED_FILE, local_name=LOCAL_FILE, local=(),
                input_shape=INPUT_SHAPE):
    """The Markdown page (``str`` ending in one newline); deterministic."""
    shape = 'x'.join(map(str, input_shape))
    out = [HEADER.format(tool=TOOL, published=published_name.replace(osp.sep, '/'),
                         local=local_name.replace(osp.sep, '/'), shape=shape)]
    designs = sorted({r.config.design for r in rows})
    out.append('Designs: ' + ', '.join(f'[{d}](#{_anchor(d)})' for d in designs) + '.\n')
    sources = {}  # source text -> number, in order of first appearance
    unverified = []  # (config, entry), in order of appearance

    def source_ref(text):
        if text not in sources:
            sources[text] = len(sources) + 1
        return f'[P{sources[text]}](#published-sources)'

    def published_cell(config, entry):
        text = f'{entry["metric"]}: {entry["value"]} {source_ref(entry["source"])}'
        if entry.get('unverified'):
            unverified.append((config, entry))
            text += f' **unverified** [U{len(unverified)}](#unverified-published-figures)'
        return text

    for design in designs:
        out.append(f'## {design}\n')
        for pipeline in PIPELINES:
            group = sorted((r for r in rows
                            if r.config.design == design and r.config.pipeline == pipeline),
                           key=lambda r: r.config.path)
            if not group:
                continue
            out.append(f'### {design}: {pipeline}\n')
            # The low-bit columns only where a row has a low-bit backbone.
            low = any(r.low_bit_layers for r in group)
            cells = []
            for r in group:
                name = r.config.path.split('/')[-1]
                pub = '<br>'.join(published_cell(r.config.path, e)
                                  for e in r.published) or '-'
                loc = '<br>'.join(
                    ', '.join(f'{m} {_number(v)}' for m, v in metrics.items())
                    + f' [L{i + 1}](#local-runs)' for i, metrics in r.local) or '-'
                cells.append([f'[{name}](../{r.config.path})', r.backbone,
                             format_mparams(r.params), format_mparams(r.imagenet_params),
                             format_gflops(r.flops), *(_low_bit_cells(r) if low else []),
                             pub, loc])
            low_cols = ['size (MB, computed)', f'full-precision FLOPs (G, {shape}, computed)',
                        f'BOPs (G, {shape}, computed)'] if low else []
            out.append(markdown_table(
                ['config', 'backbone', 'params (M, computed)', 'params + cls (M, computed)',
                 f'FLOPs (G, {shape}, computed)', *low_cols, 'published', 'local'], cells,
                'llrrr' + 'r' * len(low_cols) + 'll'))
            out.append('')
    out.extend(render_resource_view(rows, shape))
    out.append('## Published sources\n')
    if sources:
        out.extend(f'- P{n}: {_cell(text)}' for text, n in sources.items())
    else:
        out.append('None.')
    out.append('')
    if unverified:
        out.append('## Unverified published figures\n')
        out.append('Figures that could not be traced to the source they are attributed to; '
                   'shown until confirmed or removed, not to be relied on.\n')
        out.extend(f'- U{i + 1}: `{config}`, {_cell(e["metric"])}: {_cell(e["value"])}. '
                   f'{_cell(e["unverified"])}' for i, (config, e) in enumerate(unverified))
        out.append('')
    out.append('## Local runs\n')
    if local:
        for i, run in enumerate(local):
            out.append(f'- L{i + 1}: {run["date"]}, commit `{run["commit"]}`, '
                       f'seed {run["seed"]}, machine: {run["machine"]}; '
                       f'{len(run["results"])} configs; command: `{run["command"]}`'
                       + (f'. {run["note"]}' if run['note'] else ''))
    else:
        out.append('None.')
    return '\n'.join(out).rstrip('\n') + '\n'


RESOURCE_INTRO = """\
Accuracy against cost for every config, one table per pipeline. Computed, as in the tables
above: params, FLOPs, size at the real bit-widths, full-precision FLOPs and BOPs of the
backbone at {shape}. Local, measured by `bash tools/analysis_tools/compare.sh --resources
CONFIG ...` on the embedded data and recorded in `{local}` (a run set's `resources`); a
row's measured columns all come from the newest run set that measured it, named by its L
number under [Local runs](#local-runs) (date, commit, machine, command): *peak train
memory*, the largest resident set size of the training process during a training iteration
(`mmext.PeakMemoryHook`); *train step*, that peak less the resident size when the first
iteration started (activations, gradients, optimizer state and allocator reserve on top of
the loaded model); *latency*, inference per image of the whole model in eval mode, batch
1, 224x224 (`tools/analysis_tools/benchmark.py`); *accuracy*, the same runs' final
validation metrics on the embedded data, not COCO or ADE20K. Memory and latency are of the
recorded machine and settings, not portable figures; method in
[analysis_tools.md](analysis_tools.md#resource-view). "not measured": no run set has the
config.
"""


def render_resource_view(rows, shape):
    """Lines of the resource view: one table per pipeline, every config
    (sorted by path), computed and measured columns (module docstring)."""
    out = ['## Resource view\n', RESOURCE_INTRO.format(shape=shape, local=LOCAL_FILE)]
    measured_keys = [k for k in RESOURCE_KEYS
                     if any(r.resources and k in r.resources[1] for r in rows)]
    # Peak memory and latency are shown (as "not measured") even before any
    # run set measured them; the CUDA column only once one did.
    keys = [k for k in RESOURCE_KEYS if k in measured_keys or k != 'cuda_max_allocated_mib']
    for pipeline in PIPELINES:
        group = sorted((r for r in rows if r.config.pipeline == pipeline),
                       key=lambda r: r.config.path)
        if not group:
            continue
        out.append(f'### Resource view: {pipeline}\n')
        low = any(r.low_bit_layers for r in group)
        cells = []
        for r in group:
            name = r.config.path.split('/')[-1]
            if r.resources:
                index, values, metrics = r.resources
                measured = [_number(values[k]) if k in values else NOT_MEASURED for k in keys]
                acc = ', '.join(f'{m} {_number(v)}' for m, v in metrics.items()) \
                    + f' [L{index + 1}](#local-runs)'
            else:
                measured, acc = [NOT_MEASURED] * len(keys), NOT_MEASURED
            size = format_mbytes(r.effective_bytes) if r.effective_bytes is not None else '-'
            cells.append([f'[{name}](../{r.config.path})', r.config.design,
                          format_mparams(r.params), format_gflops(r.flops), size,
                          *(_low_bit_cells(r)[1:] if low else []), *measured, acc])
        low_cols = [f'full-precision FLOPs (G, {shape}, computed)',
                    f'BOPs (G, {shape}, computed)'] if low else []
        out.append(markdown_table(
            ['config', 'design', 'params (M, computed)', f'FLOPs (G, {shape}, computed)',
             'size (MB, computed)', *low_cols, *(RESOURCE_KEYS[k] for k in keys),
             'accuracy (local)'], cells,
            'llrrr' + 'r' * (len(low_cols) + len(keys)) + 'l'))
        out.append('')
    return out


def _low_bit_cells(row):
    """Size, full-precision FLOPs and BOPs of a row's backbone (a
    full-precision one: all its FLOPs, 0 BOPs)."""
    size = format_mbytes(row.effective_bytes) if row.effective_bytes is not None else '-'
    return [size, format_gflops(row.flops - row.low_bit_macs), format_gbops(row.bops)]


def _anchor(heading):
    """GitHub's anchor of a ``## heading`` (lower case, spaces to dashes,
    punctuation other than ``-`` and ``_`` dropped)."""
    keep = ''.join(c for c in heading.lower() if c.isalnum() or c in ' -_')
    return keep.replace(' ', '-')


# --------------------------------------------------------------------------
# local-results blocks in other pages
#
# A docs page shows a set of local runs between two markers naming the set
# (``L1`` is the first entry of the local file, as on the model-zoo page):
#
#     <!-- local-results:begin L1 -->
#     (generated table)
#     <!-- local-results:end -->
#
# so the figures live once, in the local file, and the pages are regenerated
# (and checked) with the model-zoo page.
LOCAL_BEGIN = '<!-- local-results:begin'
LOCAL_END = '<!-- local-results:end -->'
_LOCAL_BLOCK = re.compile(
    r'^(?P<begin><!-- local-results:begin\s+L(?P<index>\d+)\s*-->)[ \t]*\n(?P<body>.*?)^'
    + re.escape(LOCAL_END), re.S | re.M)
LOCAL_DOCS_GLOB = (osp.join('docs', '*.md'), osp.join('docs', 'designs', '*.md'))


def render_local_table(run, index):
    """Markdown of one local run set: where the figures come from, then one
    row per config (metrics in the order they first appear)."""
    metrics = []
    for values in run['results'].values():
        metrics.extend(m for m in values if m not in metrics)
    rows = [[config.split('/')[1], f'`{config}`',
             *(_number(values[m]) if m in values else '-' for m in metrics)]
            for config, values in run['results'].items()]
    return (f'Local (L{index}), {run["date"]}, commit `{run["commit"]}`, seed {run["seed"]}, '
            f'machine: {run["machine"]}; command: `{run["command"]}`'
            + (f'. {run["note"]}' if run['note'] else '') + '. Generated from '
            f'`{LOCAL_FILE}` by `{TOOL}`; not COCO or ADE20K figures.\n\n'
            + markdown_table(['design', 'config', *(f'{m} (local)' for m in metrics)], rows,
                             'll' + 'r' * len(metrics)) + '\n')


def update_local_blocks(text, local, name='page'):
    """``text`` with every local-results block regenerated from ``local``.

    Raises:
        MMExtError: On unbalanced markers or a run set that does not exist.
    """
    blocks = list(_LOCAL_BLOCK.finditer(text))
    if text.count(LOCAL_BEGIN) != len(blocks) or text.count(LOCAL_END) != len(blocks):
        raise MMExtError(f'{name}: unbalanced local-results markers')

    def table(match):
        index = int(match['index'])
        if not 1 <= index <= len(local):
            raise MMExtError(f'{name}: local-results block L{index}, but {LOCAL_FILE} has '
                             f'{len(local)} run sets')
        return f"{match['begin']}\n{render_local_table(local[index - 1], index)}{LOCAL_END}"

    return _LOCAL_BLOCK.sub(table, text)


def local_pages(root=REPO, local=None, local_file=None):
    """``{path: regenerated text}`` of the docs pages with local-results
    blocks (other pages are left out)."""
    if local is None:
        _, local = load_metadata(list_configs(root), root, local_file=local_file)
    pages = {}
    for pattern in LOCAL_DOCS_GLOB:
        for path in sorted(glob.glob(osp.join(root, pattern))):
            with open(path, encoding='utf-8', newline='') as f:
                text = f.read()
            if LOCAL_BEGIN in text or LOCAL_END in text:
                pages[path] = update_local_blocks(text, local, osp.relpath(path, root))
    return pages


# --------------------------------------------------------------------------
# page


def generate(root=REPO, cost_fn=None, progress=None, published_file=None, local_file=None,
             configs=None):
    """The page for the repository at ``root`` (default: this checkout);
    ``configs`` (repository-relative paths) restricts its rows to a subset,
    e.g. the configs of one comparison."""
    paths = list_configs(root)
    if not paths:
        raise MMExtError(f'no configs under {osp.join(root, "configs")}/<design>/')
    published, local = load_metadata(paths, root, published_file, local_file)
    if configs is not None:
        unknown = sorted(set(configs) - set(paths))
        if unknown:
            raise MMExtError(f'not configs of the repository: {unknown}')
        paths = [p for p in paths if p in set(configs)]
    zoo_configs = [read_config(p, root) for p in paths]
    if cost_fn is None:
        def cost_fn(p):
            return backbone_cost(p, root=root)
    rows = build_rows(zoo_configs, published, local, cost_fn=cost_fn, progress=progress)
    pub_name = osp.relpath(published_file or osp.join(root, PUBLISHED_FILE), root)
    loc_name = osp.relpath(local_file or osp.join(root, LOCAL_FILE), root)
    return render_page(rows, pub_name, loc_name, local)


def diff_page(new, page_path, root=REPO):
    """Unified diff of the committed page against ``new`` ('' when equal)."""
    old = ''
    if osp.isfile(page_path):
        with open(page_path, encoding='utf-8', newline='') as f:
            old = f.read()
    if old == new:
        return ''
    rel = osp.relpath(page_path, root).replace(osp.sep, '/')
    diff = ''.join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                        f'a/{rel}', f'b/{rel}'))
    return diff or f'{rel}: differs (line endings or a missing final newline)\n'


def write_page(new, page_path):
    with open(page_path, 'w', encoding='utf-8', newline='\n') as f:
        f.write(new)


def append_local_run(entry, local_file=None, root=REPO):
    """Append one run set (see :func:`mmext.analysis.leaderboard.local_run_set`)
    to the local-results file, keeping its comments; the result is validated
    before it is written."""
    import yaml
    path = local_file or osp.join(root, LOCAL_FILE)
    old = ''
    if osp.isfile(path):
        with open(path, encoding='utf-8') as f:
            old = f.read()
    data = _load_mapping(path) if old else None
    if data is None:
        old = old.rstrip('\n') + ('\n' if old.strip() else '') + 'runs:\n'
    elif not (isinstance(data, dict) and list(data) == ['runs']):
        raise MMExtError(f'{path}: expected only a "runs" list to append to')
    item = {k: v for k, v in entry.items() if v not in (None, '')}
    block = yaml.safe_dump([item], sort_keys=False, allow_unicode=True, width=100)
    new = old.rstrip('\n') + '\n' + block
    validate_local(yaml.safe_load(new), list_configs(root), osp.relpath(path, root))
    with open(path, 'w', encoding='utf-8', newline='\n') as f:
        f.write(new)
    return path


# --------------------------------------------------------------------------
# command line


def record(run_sets_file, local_file=None, root=REPO):
    """Append the run sets of ``run_sets_file`` (a ``local_results.yml``
    that ``tools/analysis_tools/compare.py`` wrote) to the repository's
    local-results file; returns that file."""
    data = _load_mapping(run_sets_file)
    runs = data.get('runs') if isinstance(data, dict) else None
    if not isinstance(runs, list) or not runs:
        raise MMExtError(f'{run_sets_file}: expected a mapping with a list under "runs"')
    for entry in runs:
        path = append_local_run(entry, local_file, root)
    return path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Generate docs/model_zoo.md')
    parser.add_argument('--check', action='store_true',
                        help='write nothing; exit 1 and print a diff when the page is stale')
    parser.add_argument('--out', default=osp.join(REPO, PAGE),
                        help='the page (default: docs/model_zoo.md)')
    parser.add_argument('--published', help=f'published figures (default: {PUBLISHED_FILE})')
    parser.add_argument('--local', help=f'local results (default: {LOCAL_FILE})')
    parser.add_argument('--record', metavar='RUN_SETS',
                        help='first append the run sets of a local_results.yml written by '
                        'tools/analysis_tools/compare.py to the local results')
    args = parser.parse_args(argv)
    if args.check and args.record:
        parser.error('--record writes; it does not go with --check')
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    if args.record:
        print(f'recorded in {osp.relpath(record(args.record, args.local), REPO)}')
    configs = list_configs()
    print(f'{len(configs)} configs', file=sys.stderr)
    bar = None

    def progress():
        if bar is not None:
            bar.update()

    zoo_configs = [read_config(p) for p in configs]
    n = distinct_costs(zoo_configs)
    print(f'{n} distinct backbones to count', file=sys.stderr)
    if sys.stderr.isatty():
        from mmengine.utils import ProgressBar
        bar = ProgressBar(n, file=sys.stderr)
    published, local = load_metadata(configs, REPO, args.published, args.local)
    rows = build_rows(zoo_configs, published, local, progress=progress)
    pub_name = osp.relpath(args.published or osp.join(REPO, PUBLISHED_FILE), REPO)
    loc_name = osp.relpath(args.local or osp.join(REPO, LOCAL_FILE), REPO)
    status = 0
    pages = {args.out: render_page(rows, pub_name, loc_name, local)}
    pages.update(local_pages(REPO, local))
    for path, text in pages.items():
        rel = osp.relpath(path, REPO)
        diff = diff_page(text, path)
        if args.check:
            if diff:
                print(diff, end='')
                print(f'{rel} is stale; run python {TOOL}')
                status = 1
            else:
                print(f'{rel} is current')
        else:
            if diff:
                write_page(text, path)
            print(f'{"wrote" if diff else "unchanged:"} {rel}')
    print(f'{len(rows)} configs')
    sys.stdout.flush()
    print(f'({time.perf_counter() - start:.1f} s)', file=sys.stderr)
    return status


if __name__ == '__main__':
    with friendly_errors('model_zoo'):
        sys.exit(main())
