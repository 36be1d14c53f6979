"""A leaderboard from mmengine work dirs: one Markdown table, an accuracy vs
FLOPs plot and the training curves side by side.

A *run* is a work dir as ``tools/train.py`` leaves it (mmengine layout)::

    work_dir/<config_name>.py                  the dumped config (model, schedule, seed)
    work_dir/<timestamp>/<timestamp>.log       log (only its environment header is read)
    work_dir/<timestamp>/vis_data/scalars.json one json dict per logged step: losses and
                                               validation metrics, as mmengine wrote them
    work_dir/iter_<N>.pth                      checkpoints
    work_dir/run.json                          written by tools/analysis_tools/compare.py
    work_dir/peak_memory.json                  mmext.PeakMemoryHook (train --peak-memory)
    work_dir/benchmark*.json, ../benchmark*.json  tools/analysis_tools/benchmark.py --json
    work_dir/train.out, ../<name>.out          captured stdout/stderr (optional)

Metrics come from ``scalars.json`` and the schedule from the dumped config,
never from log text. Runs of one config (same config file, preset and schedule) with different
seeds form one row: the final metrics are shown as mean +- std over the runs.
Runs without metrics, with a traceback or that stopped before ``max_iters``
are listed in their own section with the reason, never dropped.

``tools/analysis_tools/leaderboard.py`` is the command line and
``tools/analysis_tools/compare.py`` trains the configs first.
"""
import dataclasses
import glob
import json
import os
import os.path as osp
import re
import statistics

from mmext.utils.errors import MMExtError

from .low_bit import format_gbops, format_mbytes
from .model_complexity import format_gflops, format_mparams, markdown_table

TIMESTAMP = re.compile(r'^\d{8}_\d{6}$')
# (leaderboard column, mmengine metric keys in order of preference, scale to %)
METRICS = (
    ('box AP', ('coco/bbox_mAP', 'bbox_mAP'), 100.0),
    ('mask AP', ('coco/segm_mAP', 'segm_mAP'), 100.0),
    ('mIoU', ('mIoU', ), 1.0),
)


@dataclasses.dataclass
class Run:
    """One training run (one work dir)."""

    work_dir: str
    status: str = 'missing'  # finished | crashed | unfinished | missing
    reason: str = ''
    config: str = None  # source config (repo-relative when inside the repo)
    dumped_config: str = None
    seed: object = None
    preset: str = None
    max_iters: int = None
    last_iter: int = None
    environment: str = ''
    method: str = '-'
    backbone: str = '-'
    final: dict = dataclasses.field(default_factory=dict)  # column -> value (%)
    best: dict = dataclasses.field(default_factory=dict)
    losses: list = dataclasses.field(default_factory=list)  # [(iter, loss)]
    val_curve: dict = dataclasses.field(default_factory=dict)  # column -> [(iter, v)]
    latency_ms: float = None
    params: int = None
    flops: int = None
    # Low-bit backbones only (mmext.analysis.low_bit); None otherwise.
    bops: int = None
    full_precision_flops: int = None
    effective_bytes: int = None
    # mmext.PeakMemoryHook's peak_memory.json (MiB figures); None: not measured.
    peak_memory: dict = None

    @property
    def name(self):
        return osp.splitext(osp.basename(self.config or self.dumped_config or self.work_dir))[0]

    @property
    def group_key(self):
        return (self.config or self.dumped_config or self.work_dir, self.preset, self.max_iters)


# --------------------------------------------------------------------------
# discovery and parsing


def _read(path):
    try:
        with open(path, encoding='utf-8', errors='replace') as f:
            return f.read()
    except OSError:
        return ''


def _is_run_dir(path):
    return any(TIMESTAMP.match(d) and osp.isdir(osp.join(path, d)) for d in os.listdir(path)) \
        or osp.isfile(osp.join(path, 'run.json'))


def find_runs(patterns):
    """Expand work-dir patterns (globs allowed) into run folders.

    A pattern naming a folder that holds runs (e.g. ``work_dirs/compare``)
    yields every run below it; one that matches nothing is reported as a
    missing run.

    Returns:
        list[str]: run folders, sorted, unique.
    """
    found = []
    for pattern in patterns:
        matches = sorted(p for p in glob.glob(pattern) if osp.isdir(p))
        if not matches:
            found.append(pattern)  # becomes a 'missing' run
        for path in matches:
            for dirpath, dirnames, _ in os.walk(path):
                dirnames[:] = sorted(d for d in dirnames if not TIMESTAMP.match(d))
                if _is_run_dir(dirpath):
                    found.append(dirpath)
    seen, out = set(), []
    for p in found:
        p = osp.normpath(p)
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def configs_parent():
    """The folder whose ``configs/`` are mmext's configs: the checkout of an
    editable install (``mmext/.mim/configs`` links there), ``mmext/.mim`` of
    a wheel. Runs name their config relative to it (``configs/<design>/...``).
    """
    from mmext.utils.embedded import configs_root
    return osp.dirname(osp.realpath(configs_root()))


def _latest_log_dir(work_dir):
    """The newest timestamp folder whose scalars.json has training steps
    (tools/test.py adds timestamp folders too; a resumed run's latest folder
    has the end); else the newest one."""
    stamps = sorted((d for d in os.listdir(work_dir) if TIMESTAMP.match(d)), reverse=True)
    for d in stamps:
        if any('loss' in row for row in _scalars(osp.join(work_dir, d, 'vis_data',
                                                          'scalars.json'))):
            return osp.join(work_dir, d)
    return osp.join(work_dir, stamps[0]) if stamps else None


def _environment(log):
    """Short environment string from mmengine's log header."""
    def grab(key):
        m = re.search(rf'^\s*{re.escape(key)}: (.+)$', log, re.M)
        return m.group(1).strip() if m else None

    parts = []
    if grab('PyTorch'):
        parts.append(f"PyTorch {grab('PyTorch')}")
    if grab('MMEngine'):
        parts.append(f"MMEngine {grab('MMEngine')}")
    gpu = re.search(r'^\s*GPU 0[^:]*: (.+)$', log, re.M)
    if grab('CUDA available') == 'True':
        parts.append(gpu.group(1).strip() if gpu else 'CUDA')
    elif grab('CUDA available') == 'False':
        parts.append('CPU')
    return ', '.join(parts)


def _scalars(path):
    rows = []
    for line in _read(path).splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def _metric_of(entry):
    """{column: value in %} of one validation entry."""
    out = {}
    for col, keys, scale in METRICS:
        for k in keys:
            if isinstance(entry.get(k), (int, float)):
                out[col] = float(entry[k]) * scale
                break
    return out


def _source_config(dumped):
    """The mmext config the run was made from (``configs/<design>/...``): the
    one with the dumped config's file name, if any."""
    name = osp.basename(dumped) if dumped else None
    if name:
        parent = configs_parent()
        hits = sorted(glob.glob(osp.join(parent, 'configs', '**', name), recursive=True))
        if hits:
            return osp.relpath(hits[0], parent)
    return None


def _model_labels(cfg):
    model = cfg.get('model', {})
    method = model.get('type', '-')
    if method in ('EncoderDecoder', 'CascadeEncoderDecoder') and model.get('decode_head'):
        head = model['decode_head']
        head = head[-1] if isinstance(head, (list, tuple)) else head
        method = f"{head.get('type', '?')} ({method})"
    backbone = model.get('backbone', {})
    label = backbone.get('type', '-')
    for key in ('depth', 'arch'):
        if isinstance(backbone.get(key), (int, str)):
            label = f'{label}-{backbone[key]}'
            break
    return method, label


def _latency(run_dir):
    """Median inference latency (ms) from a benchmark json next to the run
    (``benchmark*.json``: tools/analysis_tools/benchmark.py's result dict)."""
    for path in sorted(glob.glob(osp.join(run_dir, 'benchmark*.json'))) + sorted(
            glob.glob(osp.join(osp.dirname(run_dir), 'benchmark*.json'))):
        try:
            data = json.loads(_read(path))
        except ValueError:
            continue
        if isinstance(data.get('latency_ms'), (int, float)):
            return float(data['latency_ms'])
        models = data.get('models') or []
        if models and isinstance(models[0].get('infer'), dict):
            median = models[0]['infer'].get('median')
            if isinstance(median, (int, float)):
                return float(median)
    return None


def _peak_memory(run_dir):
    """``peak_memory.json`` of a run (:class:`mmext.engine.PeakMemoryHook`),
    or None when the run has none or it holds no CPU or CUDA figure."""
    try:
        data = json.loads(_read(osp.join(run_dir, 'peak_memory.json')) or 'null')
    except ValueError:
        return None
    keys = ('peak_mib', 'cuda_max_allocated_mib')
    if not isinstance(data, dict) or not any(isinstance(data.get(k), (int, float))
                                             for k in keys):
        return None
    return data


def read_run(work_dir):
    """Parse one work dir into a :class:`Run`."""
    run = Run(work_dir=work_dir)
    if not osp.isdir(work_dir):
        run.reason = 'work dir does not exist'
        return run
    meta = {}
    if osp.isfile(osp.join(work_dir, 'run.json')):
        try:
            meta = json.loads(_read(osp.join(work_dir, 'run.json')))
        except ValueError:
            meta = {}
    dumped = sorted(glob.glob(osp.join(work_dir, '*.py')))
    run.dumped_config = dumped[0] if dumped else None
    run.config = meta.get('config') or _source_config(run.dumped_config)
    run.preset = meta.get('embedded')
    run.seed = meta.get('seed')

    cfg = None
    if run.dumped_config:
        from mmengine.config import Config
        try:
            cfg = Config.fromfile(run.dumped_config)
        except Exception as exc:  # noqa: B902  (a damaged dump is a listed problem)
            run.reason = f'cannot read {osp.basename(run.dumped_config)}: {exc}'
    if cfg is not None:
        run.method, run.backbone = _model_labels(cfg)
        if run.seed is None:
            run.seed = (cfg.get('randomness') or {}).get('seed')
        run.max_iters = (cfg.get('train_cfg') or {}).get('max_iters')
        if run.preset is None and cfg.get('embedded'):
            run.preset = cfg.embedded.get('preset')

    log_dir = _latest_log_dir(work_dir)
    log = _read(osp.join(log_dir, f'{osp.basename(log_dir)}.log')) if log_dir else ''
    outs = [_read(osp.join(work_dir, 'train.out')), _read(work_dir.rstrip('/') + '.out')]
    run.environment = _environment(log)
    if run.seed is None:
        # A config without a seed: the runner drew one and logged it.
        m = re.search(r'^\s*seed: (\S+)$', log, re.M)
        run.seed = m.group(1) if m else None

    rows = _scalars(osp.join(log_dir, 'vis_data', 'scalars.json')) if log_dir else []
    train = [r for r in rows if 'loss' in r]
    vals = [r for r in rows if _metric_of(r)]
    run.losses = [(r.get('iter', r.get('step')), r['loss']) for r in train]
    iters = [r.get('iter', r.get('step')) for r in train]
    saved = [int(m) for f in glob.glob(osp.join(work_dir, 'iter_*.pth'))
             for m in re.findall(r'iter_(\d+)\.pth$', f)]
    run.last_iter = max([i for i in iters + saved if isinstance(i, int)], default=None)
    for v in vals:
        for col, value in _metric_of(v).items():
            run.val_curve.setdefault(col, []).append((v.get('step'), value))
    if vals:
        run.final = _metric_of(vals[-1])
        run.best = {col: max(v for _, v in pts) for col, pts in run.val_curve.items()}
    run.latency_ms = _latency(work_dir)
    run.peak_memory = _peak_memory(work_dir)

    failed = meta.get('returncode') not in (None, 0)
    # A run that exited 0 may still have printed a handled traceback (e.g. a
    # dataloader worker warning); only the exit status counts then.
    texts = () if meta.get('returncode') == 0 else (log, *outs)
    tb = next((t for t in texts if 'Traceback (most recent call last)' in t), None)
    if tb is not None or failed:
        run.status = 'crashed'
        last = [ln for ln in (tb or outs[0] or log).strip().splitlines() if ln.strip()]
        run.reason = (last[-1].strip() if last else '') or f"exit status {meta.get('returncode')}"
        if failed and tb is None:
            run.reason = f"exit status {meta['returncode']}: {run.reason}"
    elif not log_dir:
        run.status, run.reason = 'missing', 'no log (the run never started)'
    elif run.max_iters and (run.last_iter or 0) < run.max_iters:
        run.status = 'unfinished'
        run.reason = f'stopped at iteration {run.last_iter or 0} of {run.max_iters}'
    elif not run.final:
        run.status, run.reason = 'unfinished', 'no validation metrics in scalars.json'
    else:
        run.status = 'finished'
    return run


# --------------------------------------------------------------------------
# aggregation


@dataclasses.dataclass
class Entry:
    """One leaderboard row: the finished runs of one config."""

    runs: list

    @property
    def first(self):
        return self.runs[0]

    def stat(self, col, which='final'):
        values = [getattr(r, which)[col] for r in self.runs if col in getattr(r, which)]
        if not values:
            return None
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return statistics.fmean(values), std, len(values)

    @property
    def design(self):
        cfg = self.first.config
        if cfg and not osp.isabs(cfg) and cfg.startswith('configs' + os.sep):
            return cfg.split(os.sep)[1]
        return '-'

    @property
    def latency(self):
        values = [r.latency_ms for r in self.runs if r.latency_ms is not None]
        return statistics.median(values) if values else None

    def memory(self, key):
        """Median over the runs of a ``peak_memory.json`` figure (``peak_mib``,
        ``increase_mib``, ``cuda_max_allocated_mib``...); None when no run
        measured it."""
        values = [r.peak_memory[key] for r in self.runs
                  if r.peak_memory and isinstance(r.peak_memory.get(key), (int, float))]
        return statistics.median(values) if values else None


def group_runs(runs):
    """Finished runs grouped by config / preset / schedule, in first-seen order."""
    groups = {}
    for r in runs:
        if r.status == 'finished':
            groups.setdefault(r.group_key, []).append(r)
    return [Entry(sorted(g, key=lambda r: str(r.seed))) for g in groups.values()]


def attach_costs(entries, cost_fn=None):
    """Backbone params / FLOPs per entry (``backbone_cost``, cached per config);
    a config that cannot be built gets none (shown as '-')."""
    if cost_fn is None:
        from .backbone_costs import backbone_cost

        def cost_fn(path):
            return backbone_cost(path, root=configs_parent())

    notes = []
    for e in entries:
        path = e.first.config or e.first.dumped_config
        try:
            cost = cost_fn(path)
        except Exception as exc:  # noqa: B902  (listed, the table still builds)
            notes.append(f'`{path}`: no backbone cost ({type(exc).__name__}: {exc})')
            continue
        low_bit = getattr(cost, 'low_bit_layers', 0) > 0
        for r in e.runs:
            r.params, r.flops = cost.params, cost.flops
            r.backbone = cost.backbone or r.backbone
            if low_bit:
                r.bops, r.full_precision_flops = cost.bops, cost.full_precision_flops
            # Every backbone's size, so a low-bit row has full-precision rows
            # to compare with.
            r.effective_bytes = getattr(cost, 'effective_bytes', None)
    return notes


def short_labels(entries):
    """One short, unique label per entry for plots and the baseline view:
    the design folder (``configs/<design>/``; the config name outside
    ``configs/``), then, among entries sharing it, the ``_``-separated parts
    of their config names that not all of them share, then the preset and
    schedule."""
    labels = [e.design if e.design != '-' else e.first.name for e in entries]
    for stage in ('name parts', 'preset and schedule'):
        for label in sorted({x for x in labels if labels.count(x) > 1}):
            idx = [i for i, x in enumerate(labels) if x == label]
            if stage == 'name parts':
                parts = [entries[i].first.name.split('_') for i in idx]
                common = set.intersection(*(set(p) for p in parts))
                extra = [' '.join(t for t in p if t not in common) for p in parts]
            else:
                extra = [f'{entries[i].first.preset or "-"}, {entries[i].first.max_iters} it'
                         for i in idx]
            for i, x in zip(idx, extra):
                if x and x != label:
                    labels[i] = f'{label} {x}' if stage == 'name parts' else f'{label} ({x})'
    return labels


def find_baseline(runs, entries, baseline):
    """The entry of the ``baseline`` config (a path or a config name).

    Returns:
        Entry | None: None when its runs exist but none finished (the
        leaderboard says so).

    Raises:
        MMExtError: no run of that config, or it names several rows.
    """
    name = osp.splitext(osp.basename(baseline))[0]
    hits = [e for e in entries if e.first.name == name]
    if len(hits) > 1:
        raise MMExtError(f'--baseline {baseline} names {len(hits)} rows (configs of that name '
                         'in other folders, presets or schedules); pass the work dirs of one')
    if hits:
        return hits[0]
    if any(r.name == name for r in runs):
        return None
    names = ', '.join(sorted({r.name for r in runs})) or 'none'
    raise MMExtError(f'--baseline {baseline}: no run of that config among the work dirs (their '
                     f'configs: {names}); name one of them or add its work dir')


def _entry_config(e):
    """The resolved config of an entry: its first run's dumped config, as
    trained; the source config when there is none."""
    from .baseline import load_config
    path = e.first.dumped_config or e.first.config
    if path and not osp.isabs(path) and not osp.isfile(path):
        path = osp.join(configs_parent(), path)
    if not path:
        raise MMExtError(f'{e.first.work_dir}: no config to compare')
    return load_config(path)


def _ratio(a, b):
    return f'{a / b:.3f}x' if a is not None and b else '-'


def _signed(x):
    return f'{x:+.2f}'


def baseline_section(baseline, entries, labels, differing=None, out_dir=None):
    """Markdown lines of the baseline-relative view: per other entry and
    metric, the paired difference, its 95% interval, the verdict and the cost
    ratios (:mod:`mmext.analysis.baseline`)."""
    from .baseline import paired_difference
    base_label = labels[entries.index(baseline)]
    b = baseline.first
    lines = [f'## Against the baseline: {base_label}', '',
             f'Baseline {_link(b.config or b.dumped_config, out_dir)}, seeds '
             f'{", ".join(str(r.seed) for r in baseline.runs)}. Δ = config − baseline on the '
             'same seed, mean over the paired seeds; 95% CI: paired t interval, mean ± '
             't(0.975, n−1)·sd/√n over the n paired seeds; *within noise*: the interval '
             'contains 0. One paired seed gives no interval (the spread is unknown), so no '
             'verdict; a seed only one side ran is left out and listed below. Cost columns: '
             'config / baseline (backbone params and FLOPs, latency when both have a '
             'benchmark). *Also differs in*: see the next section.', '']
    rows, left_out = [], []
    for e, label in zip(entries, labels):
        if e is baseline:
            continue
        r = e.first
        costs = [_ratio(r.params, b.params), _ratio(r.flops, b.flops),
                 _ratio(e.latency, baseline.latency)]
        other = ', '.join((differing or {}).get(label, [])) or '-'
        for col, _, _ in METRICS:
            d = paired_difference(baseline, e, col)
            if d is None:
                continue
            ci = f'[{_signed(d.low)}, {_signed(d.high)}]' if d.low is not None else '-'
            rows.append([label, col, _signed(d.mean) if d.n else '-', ci, d.n, d.verdict,
                         *costs, other])
            for side, seeds in d.unpaired.items():
                who = 'the baseline' if side == 'baseline' else label
                left_out.append(f'{label}, {col}: seed {", ".join(seeds)} only run by {who}, '
                                'left out')
    if not rows:
        lines.append('No other config shares a metric with the baseline.')
        return lines
    lines.append(markdown_table(['config', 'metric', 'Δ', '95% CI', 'pairs', 'verdict',
                                 'params ×', 'FLOPs ×', 'latency ×', 'also differs in'],
                                rows, 'llrrrlrrrl'))
    if left_out:
        lines += [''] + [f'- {x}' for x in left_out]
    return lines


def differences_section(entries, labels, baseline=None):
    """Markdown lines listing where the resolved configs differ besides the
    design (host class, schedule, image size: :func:`mmext.analysis.baseline.config_fields`),
    against the baseline or across all entries; and {label: [groups]} of
    each entry that differs (from the baseline, or from any other entry).

    Returns:
        tuple[list[str], dict, list[str]]: lines, differing groups, notes
        (configs that could not be read).
    """
    from .baseline import GROUPS, config_fields, field_differences, show
    fields, notes = {}, []
    for e, label in zip(entries, labels):
        try:
            fields[label] = config_fields(_entry_config(e))
        except MMExtError as exc:
            notes.append(f'{label}: not compared ({exc})')
    intro = ("Compared keys of the resolved configs (the dumped config of each row's first "
             'run): host class (model.backbone type / depth / arch), schedule (train_cfg, '
             'optim_wrapper, param_scheduler, train batch size) and image size (scale / crop '
             'keys of the train and val pipelines, data_preprocessor size). A metric '
             "difference between rows that differ here is not the design's effect alone.")
    lines = ['## Differences besides the design', '', intro, '']
    differing = {}
    base_label = labels[entries.index(baseline)] if baseline in entries else None
    if base_label is not None and base_label in fields:
        rows = []
        for label, f in fields.items():
            if label == base_label:
                continue
            diffs = field_differences({base_label: fields[base_label], label: f})
            for group, key, values in diffs:
                rows.append([label, group, key, show(values[base_label]), show(values[label])])
            if diffs:
                differing[label] = [g for g in GROUPS if any(d[0] == g for d in diffs)]
        table = (markdown_table(['config', 'differs in', 'key', 'baseline value',
                                 'config value'], rows)
                 if rows else None)
    else:
        diffs = field_differences(fields) if len(fields) > 1 else []
        rows = []
        for group, key, values in diffs:
            by_value = {}
            for label, v in values.items():
                by_value.setdefault(show(v), []).append(label)
                if group not in differing.setdefault(label, []):
                    differing[label].append(group)
            rows += [[group, key, v, ', '.join(ls)] for v, ls in by_value.items()]
        table = markdown_table(['differs in', 'key', 'value', 'configs'], rows) if rows else None
    if table:
        print_groups = sorted({g for gs in differing.values() for g in gs}, key=GROUPS.index)
        lines[0] = f'## Differences besides the design: {", ".join(print_groups)}'
        lines.append(table)
    else:
        lines.append('None: the compared configs agree on host class, schedule and image size.')
    return lines, differing, notes


NOT_MEASURED = 'not measured'
# Measured resources in a local run set (docs/local_results.yml ``resources``)
# and where they come from: a peak_memory.json field, or the benchmark's latency.
RESOURCE_KEYS = {'peak_train_mib': 'peak_mib', 'train_step_mib': 'increase_mib',
                 'cuda_max_allocated_mib': 'cuda_max_allocated_mib',
                 'latency_ms': 'latency_ms'}


def _measured(value, fmt='.1f'):
    return NOT_MEASURED if value is None else format(value, fmt)


def has_resources(entries):
    """True when a run of ``entries`` has a measured peak memory."""
    return any(r.peak_memory for e in entries for r in e.runs)


def resources_section(entries, labels):
    """Markdown lines of the resource view: per entry its accuracy, the
    backbone's params, FLOPs and size (and, with a low-bit backbone among
    the entries, full-precision FLOPs and BOPs), the measured peak training
    memory and the inference latency; a figure nobody measured reads
    ``not measured``."""
    low_bit = any(e.first.bops is not None for e in entries)
    metrics = [c for c, _, _ in METRICS if any(e.stat(c) for e in entries)]
    cuda = any(e.memory('cuda_max_allocated_mib') is not None for e in entries)
    methods = sorted({r.peak_memory.get('method', '?') for e in entries for r in e.runs
                      if r.peak_memory})
    header = ['config', *metrics, 'params (M)', 'FLOPs (G)', 'size (MB)',
              *(['full-precision FLOPs (G)', 'BOPs (G)'] if low_bit else []),
              'peak train memory (MiB)', 'train step (MiB)',
              *(['CUDA max allocated (MiB)'] if cuda else []), 'latency (ms)']
    rows = []
    for e, label in zip(entries, labels):
        r = e.first
        size, fp_flops, bops = _low_bit_cells(r)
        rows.append([label, *(_fmt(e.stat(c)) for c in metrics),
                     format_mparams(r.params) if r.params is not None else '-',
                     format_gflops(r.flops) if r.flops is not None else '-', size,
                     *([fp_flops, bops] if low_bit else []),
                     _measured(e.memory('peak_mib')), _measured(e.memory('increase_mib')),
                     *([_measured(e.memory('cuda_max_allocated_mib'))] if cuda else []),
                     _measured(e.latency)])
    intro = ('Accuracy against cost, one row per config. Accuracy: final validation metric, '
             'mean ± std over the seeds. Params, FLOPs (one multiply-add = one FLOP) and size '
             '(bytes of the parameters, low-bit weights at their bit-width) of the backbone at '
             '1x3x224x224, computed')
    if low_bit:
        intro += ('; full-precision FLOPs leave the low-bit multiply-adds out, BOPs = MACs x '
                  'weight_bits x activation_bits')
    intro += ('. Measured, median over the seeds: *peak train memory*, the largest resident '
              'set size (RSS) of the training process during a training iteration '
              '(mmext.PeakMemoryHook, `train --peak-memory`; method: '
              f'{", ".join(methods) or "-"}); *train step*, that peak less the RSS when the '
              'first iteration started (activations, gradients, optimizer state, allocator '
              'reserve on top of the loaded model and libraries). Data loading and '
              'validation are outside the window; memory the allocator keeps after a free '
              'is inside.')
    if cuda:
        intro += ' CUDA: torch.cuda.max_memory_allocated over the same windows.'
    intro += (' *Latency*: inference per image from the benchmark json next to the run '
              '(tools/analysis_tools/benchmark.py: the whole model in eval mode, post-processing '
              'included; `compare.py --resources` runs it at batch 1, 224x224). Memory and '
              'latency are of this machine (see the runs\' environment), not portable '
              'figures.')
    return ['## Resources', '', intro, '',
            markdown_table(header, rows, 'l' + 'r' * (len(header) - 1))]


# --------------------------------------------------------------------------
# rendering


def _fmt(stat):
    if stat is None:
        return '-'
    mean, std, n = stat
    return f'{mean:.2f} ± {std:.2f}' if n > 1 else f'{mean:.2f}'


def _link(config, out_dir):
    if not config:
        return '-'
    path = config if osp.isabs(config) else osp.join(configs_parent(), config)
    rel = osp.relpath(path, out_dir) if out_dir else config
    return f'[{osp.basename(config)}]({rel})'


def _low_bit_cells(r):
    """Size, full-precision FLOPs and BOPs of a row's backbone; a
    full-precision backbone does all its FLOPs at full precision and no BOPs."""
    size = format_mbytes(r.effective_bytes) if r.effective_bytes is not None else '-'
    if r.bops is not None:
        return [size, format_gflops(r.full_precision_flops), format_gbops(r.bops)]
    if r.flops is None:
        return [size, '-', '-']
    return [size, format_gflops(r.flops), format_gbops(0)]


def render_markdown(runs, entries, out_dir=None, notes=(), images=(), sections=()):
    """The leaderboard page: the table of entries, ``sections`` (lists of
    Markdown lines: the baseline view, the config differences), the finished
    runs, the missing / crashed / unfinished runs with their reason, notes,
    images.
    With a low-bit backbone among the entries the table also has its size at
    the real bit-widths, full-precision FLOPs and BOPs
    (:mod:`mmext.analysis.low_bit`)."""
    low_bit = any(e.first.bops is not None for e in entries)
    low_cols = ['size (MB)', 'full-precision FLOPs (G)', 'BOPs (G)'] if low_bit else []
    header = ['method', 'backbone', 'design', 'params (M)', 'FLOPs (G)', *low_cols,
              'latency (ms)', *(col for col, _, _ in METRICS), 'best (max over runs)', 'n',
              'seeds', 'config']
    rows = []
    for e in entries:
        r = e.first
        best = ', '.join(f'{col} {max(x.best[col] for x in e.runs if col in x.best):.2f}'
                         for col, _, _ in METRICS if e.stat(col, 'best'))
        rows.append([r.method, r.backbone, e.design,
                     format_mparams(r.params) if r.params is not None else '-',
                     format_gflops(r.flops) if r.flops is not None else '-',
                     *(_low_bit_cells(r) if low_bit else []),
                     f'{e.latency:.1f}' if e.latency is not None else '-',
                     *(_fmt(e.stat(col)) for col, _, _ in METRICS), best or '-', len(e.runs),
                     ', '.join(str(x.seed) for x in e.runs),
                     _link(r.config or r.dumped_config, out_dir)])
    if not entries:
        rows.append(['(no finished runs)'] + [''] * (len(header) - 1))
    run_rows = [[f'`{r.work_dir}`', r.status, r.seed, r.preset or '-', r.last_iter,
                 *(f'{r.final[c]:.2f}' if c in r.final else '-' for c, _, _ in METRICS),
                 r.environment or '-'] for r in runs if r.status == 'finished']
    intro = ('Final validation metrics, mean ± std over the seeds (n runs). Backbone params '
             'and FLOPs at 1x3x224x224 by mmengine\'s FlopAnalyzer with mmext\'s handles (one '
             'multiply-add = one FLOP); latency from a benchmark json in the work dir. AP in %.')
    if low_bit:
        intro += (' Low-bit backbones (modules declaring weight_bits / activation_bits): FLOPs '
                  'count their multiply-adds too; full-precision FLOPs leave them out; BOPs = '
                  'MACs x weight_bits x activation_bits; size at the real bit-widths (low-bit '
                  'weights at weight_bits, the rest at 32 bits).')
    lines = ['# Leaderboard', '', intro, '',
             markdown_table(header, rows,
                            'lll' + 'r' * (3 + len(low_cols) + len(METRICS)) + 'lrll')]
    for section in sections:
        lines += [''] + list(section)
    lines += ['', '## Runs', '',
              markdown_table(['run', 'status', 'seed', 'preset', 'iters',
                              *(c for c, _, _ in METRICS), 'environment'], run_rows,
                             'llrlr' + 'r' * len(METRICS) + 'l'),
              '', '## Missing, crashed or unfinished runs', '']
    problems = [[f'`{r.work_dir}`', r.status, r.reason] for r in runs if r.status != 'finished']
    lines.append(markdown_table(['run', 'status', 'reason'], problems) if problems else 'None.')
    if notes:
        lines += ['', '## Notes', ''] + [f'- {n}' for n in notes]
    if images:
        lines += ['']
        lines += [f'![{osp.splitext(osp.basename(p))[0]}]({osp.basename(p)})' for p in images]
    return '\n'.join(lines) + '\n'


def _plt():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def _flops_axis(ax, xs):
    """An x axis that reads at any spread of FLOPs: a linear axis at least
    20% of the values wide, so nearly equal FLOPs share one x and the ticks
    step by round numbers (MaxNLocator, no offset); a log axis beyond a 30x
    spread."""
    from matplotlib.ticker import MaxNLocator, ScalarFormatter
    lo, hi = min(xs), max(xs)
    if lo > 0 and hi / lo > 30:
        ax.set_xscale('log')
        ax.set_xlim(lo / 2, hi * 2)
        return
    center = (lo + hi) / 2
    half = max(0.6 * (hi - lo), 0.1 * center, 1e-3)
    ax.set_xlim(max(center - half, 0.0), center + half)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
    ax.xaxis.set_major_formatter(ScalarFormatter(useOffset=False))


def _overlaps(a, b, pad=1.0):
    return not (a.x1 + pad <= b.x0 or b.x1 + pad <= a.x0 or a.y1 + pad <= b.y0
                or b.y1 + pad <= a.y0)


def _place_labels(fig, ax, texts):
    """Move point labels so that none leaves the axes and none covers
    another: a label sits right of its point, left of it in the right part
    of the axes; a covered label steps down (up when that leaves the axes);
    the y range grows when a label still sticks out."""
    renderer = fig.canvas.get_renderer()
    for _ in range(6):
        box = ax.get_window_extent(renderer)
        placed = []
        for t in sorted(texts, key=lambda t: -t.xy[1]):
            px, _py = ax.transData.transform(t.xy)
            right = (px - box.x0) / box.width > 0.55
            t.set_ha('right' if right else 'left')
            dx = -6 if right else 6
            t.xyann = (dx, 0)
            ext = t.get_window_extent(renderer)
            step = ext.height + 2
            for k in range(1, 4 * len(texts) + 1):
                if not any(_overlaps(ext, p) for p in placed):
                    break
                dy = -step * ((k + 1) // 2) * (1 if k % 2 else -1) * 72 / fig.dpi
                t.xyann = (dx, dy)
                ext = t.get_window_extent(renderer)
            placed.append(ext)
        box = ax.get_window_extent(renderer)
        over = [e for e in placed if e.y0 < box.y0 or e.y1 > box.y1 or e.x0 < box.x0
                or e.x1 > box.x1]
        if not over:
            return
        y0, y1 = ax.get_ylim()
        grow = 0.15 * (y1 - y0 or 1.0)
        ax.set_ylim(y0 - grow * any(e.y0 < box.y0 for e in over),
                    y1 + grow * any(e.y1 > box.y1 for e in over))
        if any(e.x0 < box.x0 or e.x1 > box.x1 for e in over):
            x0, x1 = ax.get_xlim()
            if ax.get_xscale() == 'log':
                ax.set_xlim(x0 / 1.5, x1 * 1.5)
            else:
                w = 0.15 * (x1 - x0)
                ax.set_xlim(max(x0 - w, 0.0), x1 + w)
        fig.canvas.draw()


def draw_accuracy_vs_flops(entries, labels=None, baseline=None):
    """The accuracy-vs-FLOPs figure (one panel per metric): mean ± std over
    seeds against the backbone's GFLOPs, each point named by its short
    label (:func:`short_labels`), the baseline as a black square.

    Returns:
        matplotlib.figure.Figure: drawn, with every label inside its axes.
    """
    plt = _plt()
    labels = labels or short_labels(entries)
    cols = [c for c, _, _ in METRICS if any(e.stat(c) for e in entries)] or ['mIoU']
    fig, axes = plt.subplots(1, len(cols), figsize=(5.5 * len(cols), 4.2), squeeze=False,
                             layout='constrained')
    placements = []
    for ax, col in zip(axes[0], cols):
        pts = [(e.first.flops / 1e9, e.stat(col), label, e is baseline)
               for e, label in zip(entries, labels)
               if e.stat(col) is not None and e.first.flops is not None]
        texts = []
        for x, (mean, std, _), label, is_base in pts:
            style = dict(fmt='s', color='black', zorder=3) if is_base else dict(fmt='o')
            color = ax.errorbar(x, mean, yerr=std, capsize=3, **style)[0].get_color()
            texts.append(ax.annotate(label + (' (baseline)' if is_base else ''), (x, mean),
                                     xytext=(6, 0), textcoords='offset points', fontsize=8,
                                     va='center', color=color, annotation_clip=False))
        xlabel = 'backbone GFLOPs (224x224)'
        if pts:
            xs = [p[0] for p in pts]
            _flops_axis(ax, xs)
            spread = max(xs) - min(xs)
            if len(xs) > 1 and spread == 0:
                xlabel += '; all equal'
            elif len(xs) > 1 and spread < 0.01 * max(xs):
                xlabel += f'; all within {100 * spread / max(xs):.2g}%'
            ax.margins(y=0.15)
        else:
            ax.text(0.5, 0.5, 'no FLOPs (leaderboard built without costs)',
                    transform=ax.transAxes, ha='center', va='center', fontsize=8)
        ax.set(xlabel=xlabel, ylabel=col, title=f'{col} vs FLOPs')
        ax.grid(alpha=0.3)
        placements.append((ax, texts))
    fig.canvas.draw()
    for ax, texts in placements:
        _place_labels(fig, ax, texts)
        for t in texts:
            if t.xyann[1]:  # moved off its point's height: a leader line to the point
                ax.annotate('', t.xy, xytext=t.xyann, textcoords='offset points',
                            arrowprops=dict(arrowstyle='-', color=t.get_color(), lw=0.6,
                                            shrinkA=0, shrinkB=3))
    fig.canvas.draw()
    return fig


def plot_accuracy_vs_flops(entries, path, labels=None, baseline=None):
    """:func:`draw_accuracy_vs_flops` written to ``path`` (PNG)."""
    fig = draw_accuracy_vs_flops(entries, labels, baseline)
    fig.savefig(path, dpi=100, bbox_inches='tight')
    _plt().close(fig)
    return path


def plot_curves(entries, path, labels=None):
    """Training loss and validation metric of every run, one colour per
    config, named by its short label (:func:`short_labels`)."""
    plt = _plt()
    labels = labels or short_labels(entries)
    cols = [c for c, _, _ in METRICS if any(r.val_curve.get(c) for e in entries for r in e.runs)]
    fig, axes = plt.subplots(1, 1 + len(cols), figsize=(5.5 * (1 + len(cols)), 4.2),
                             squeeze=False)
    cmap = plt.get_cmap('tab20')
    for i, e in enumerate(entries):
        color = cmap(i % 20)
        for j, r in enumerate(e.runs):
            label = labels[i] if j == 0 else None
            pts = [(x, y) for x, y in r.losses if x is not None]
            if pts:
                axes[0][0].plot(*zip(*pts), color=color, linewidth=1, label=label)
            for ax, col in zip(axes[0][1:], cols):
                pts = [(x, y) for x, y in r.val_curve.get(col, []) if x is not None]
                if pts:
                    ax.plot(*zip(*pts), color=color, marker='o', label=label)
    axes[0][0].set(title='training loss', xlabel='iteration')
    for ax, col in zip(axes[0][1:], cols):
        ax.set(title=f'validation {col}', xlabel='iteration')
    for ax in axes[0]:
        if ax.lines:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _git_commit(root):
    """Short commit of ``root``, marked when tracked files differ from it."""
    import subprocess

    def git(*args):
        return subprocess.run(['git', '-C', root, *args], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    try:
        commit = git('rev-parse', '--short', 'HEAD')
        dirty = git('status', '--porcelain', '--untracked-files=no')
    except (OSError, subprocess.SubprocessError):
        return 'unknown (no git)'
    if not commit:
        return 'unknown (not a git checkout)'
    return commit + (' with uncommitted changes' if dirty else '')


def local_run_set(entries, command, note='', date=None):
    """The finished runs of ``entries`` as one run set of the model zoo's
    local-results file (``docs/local_results.yml`` format): date, seeds,
    machine, commit, command and, per mmext config (``configs/...``), the mean
    of each final metric over its seeds; with measured resources, also
    ``resources: {config: {peak_train_mib, train_step_mib, latency_ms}}``
    (medians over the seeds, :data:`RESOURCE_KEYS`). ``.dev_scripts/model_zoo.py --record``
    adds it to the docs.

    Returns:
        dict | None: None when no entry has an mmext config with metrics.
    """
    import datetime
    import platform
    root = configs_parent()
    results, resources, seeds, envs = {}, {}, set(), []
    for e in entries:
        cfg = e.first.config
        if not cfg or osp.isabs(cfg) or not osp.isfile(osp.join(root, cfg)):
            continue
        metrics = {}
        for col in sorted({c for r in e.runs for c in r.final}):
            mean, _, _ = e.stat(col)
            metrics[col] = round(mean, 2)
        if not metrics:
            continue
        key = cfg.replace(os.sep, '/')
        results[key] = metrics
        measured = {name: e.latency if field == 'latency_ms' else e.memory(field)
                    for name, field in RESOURCE_KEYS.items()}
        measured = {k: round(v, 1) for k, v in measured.items() if v is not None}
        if measured:
            resources[key] = measured
        seeds.update(str(r.seed) for r in e.runs)
        envs.extend(r.environment for r in e.runs if r.environment)
    if not results:
        return None
    n = {len(e.runs) for e in entries}
    machine = f'{platform.system()} {platform.machine()}, {os.cpu_count()} CPU threads'
    if envs:
        machine += f'; {envs[0]}'
    text = note or ''
    if n != {1}:
        text = (text + ' ' if text else '') + 'Figures are means over the seeds.'
    out = dict(date=date or datetime.date.today().isoformat(), seed=' '.join(sorted(seeds)),
               machine=machine, commit=_git_commit(root), command=command, note=text,
               results=results)
    if resources:
        out['resources'] = resources
    return out


def build_leaderboard(patterns, out_dir, cost_fn=None, with_costs=True, baseline=None,
                      resources=None):
    """Collect the runs under ``patterns`` and write ``leaderboard.md``,
    ``accuracy_vs_flops.png`` and ``curves.png`` into ``out_dir``.

    Args:
        baseline (str, optional): a config (path or name) among the runs:
            the page then reports every other config against it
            (:func:`baseline_section`). With or without it, the page lists
            where the compared configs differ besides the design
            (:func:`differences_section`).
        resources (bool, optional): add the resource view
            (:func:`resources_section`); None: when a run measured its peak
            memory.

    Returns:
        dict: ``runs``, ``entries``, ``baseline`` (its entry or None), the
        short ``labels`` and the written ``files``.

    Raises:
        MMExtError: no runs, or a ``baseline`` with no run among them.
    """
    dirs = find_runs(patterns)
    if not dirs:
        raise MMExtError(f'no runs found under {" ".join(patterns)}')
    out_dir = osp.abspath(out_dir)
    runs = [read_run(d) for d in dirs if osp.abspath(d) != out_dir]
    entries = group_runs(runs)
    base = find_baseline(runs, entries, baseline) if baseline else None
    labels = short_labels(entries)
    notes = attach_costs(entries, cost_fn) if with_costs else []
    sections = []
    if resources or (resources is None and has_resources(entries)):
        sections.append(resources_section(entries, labels))
    differing = {}
    if len(entries) > 1:
        diff_lines, differing, diff_notes = differences_section(entries, labels, base)
        notes += diff_notes
    if base is not None:
        sections.append(baseline_section(base, entries, labels, differing, out_dir))
    elif baseline:
        sections.append([f'## Against the baseline: {baseline}', '',
                         'The baseline has no finished run (see the missing, crashed or '
                         'unfinished runs): no baseline view.'])
    if len(entries) > 1:
        sections.append(diff_lines)
    os.makedirs(out_dir, exist_ok=True)
    images = [plot_accuracy_vs_flops(entries, osp.join(out_dir, 'accuracy_vs_flops.png'),
                                     labels, base),
              plot_curves(entries, osp.join(out_dir, 'curves.png'), labels)]
    md = osp.join(out_dir, 'leaderboard.md')
    with open(md, 'w', encoding='utf-8') as f:
        f.write(render_markdown(runs, entries, out_dir, notes, images, sections))
    return dict(runs=runs, entries=entries, baseline=base, labels=labels, files=[md, *images])
