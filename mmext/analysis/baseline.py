"""The leaderboard's answer to "does this design help, and at what cost?":
every config against a baseline config, paired by seed, and what else than
the design differs between the compared configs.

Paired difference (:func:`paired_difference`)
    For one metric, ``d_s = metric(config, seed s) - metric(baseline, seed s)``
    over the seeds both configs finished with that metric. The 95% confidence
    interval is the paired t interval ``mean(d) ± t(0.975, n-1) * sd(d) / sqrt(n)``
    (Student's t quantile from ``scipy.stats.t``, which mmdet already
    requires). A difference whose interval contains 0 is *within noise*.
    With one pair the spread of ``d`` is unknown: there is no interval and no
    verdict. A seed only one of the two configs ran is left out and named.

Differences besides the design (:func:`config_fields`)
    The resolved configs (the dumped config of a run, as trained; the source
    config when there is none) are compared on three groups of keys, nothing
    else:

    - host: ``model.backbone.type`` / ``depth`` / ``arch``;
    - schedule: ``train_cfg``, ``optim_wrapper``, ``param_scheduler`` (all
      their keys) and ``train_dataloader.batch_size``;
    - image size: the ``scale``, ``scales``, ``img_scale``, ``crop_size``,
      ``ratio_range``, ``keep_ratio``, ``size`` and ``size_divisor`` of every
      transform of the train and val pipelines, and the ``size`` /
      ``size_divisor`` / ``pad_size_divisor`` of ``model.data_preprocessor``.

    A design that is a backbone changes the host class by definition; a plugin
    design that needs mmext's host (mmseg's ``BasicBlock`` refuses plugins)
    changes it too, and the reader should know both.
"""
import dataclasses
import math
import statistics

from mmext.utils.errors import MMExtError

CONFIDENCE = 0.95
SIZE_KEYS = ('scale', 'scales', 'img_scale', 'crop_size', 'ratio_range', 'keep_ratio', 'size',
             'size_divisor')
GROUPS = ('host class', 'schedule', 'image size')


@dataclasses.dataclass
class PairedDiff:
    """One metric of one config against the baseline, paired by seed.

    ``low`` / ``high`` are None with fewer than two pairs; ``unpaired`` maps
    'baseline' / 'config' to the seeds only that side ran.
    """

    metric: str
    seeds: list
    diffs: list
    mean: float = None
    low: float = None
    high: float = None
    unpaired: dict = dataclasses.field(default_factory=dict)

    @property
    def n(self):
        return len(self.diffs)

    @property
    def verdict(self):
        if self.n == 0:
            return 'no paired seed'
        if self.low is None:
            return 'one paired seed: no interval'
        if self.low <= 0.0 <= self.high:
            return 'within noise'
        # Every leaderboard metric (AP, mIoU) is higher-is-better.
        return 'better' if self.mean > 0 else 'worse'


def t_interval(diffs, confidence=CONFIDENCE):
    """Paired t interval of the mean of ``diffs``.

    Args:
        diffs (list[float]): per-seed differences, at least two.
        confidence (float): two-sided level, e.g. 0.95.

    Returns:
        tuple[float, float]: (low, high).

    Raises:
        ValueError: fewer than two differences.
    """
    from scipy.stats import t
    n = len(diffs)
    if n < 2:
        raise ValueError(f'a t interval needs at least two differences, got {n}')
    half = t.ppf(0.5 + confidence / 2, n - 1) * statistics.stdev(diffs) / math.sqrt(n)
    mean = statistics.fmean(diffs)
    return mean - half, mean + half


def _by_seed(entry, metric):
    """{seed (as str): final metric} of an entry's runs; a seed run twice
    keeps its first run (entries list their runs sorted by seed), a run
    without a known seed cannot be paired."""
    out = {}
    for r in entry.runs:
        if metric in r.final and r.seed is not None:
            out.setdefault(str(r.seed), r.final[metric])
    return out


def paired_difference(baseline, entry, metric):
    """``entry`` minus ``baseline`` on ``metric``, paired by seed.

    Args:
        baseline, entry (mmext.analysis.leaderboard.Entry): leaderboard rows.
        metric (str): leaderboard column, e.g. 'mIoU'.

    Returns:
        PairedDiff | None: None when either side lacks the metric.
    """
    base, other = _by_seed(baseline, metric), _by_seed(entry, metric)
    if not base or not other:
        return None
    seeds = sorted(set(base) & set(other), key=_seed_order)
    diffs = [other[s] - base[s] for s in seeds]
    out = PairedDiff(metric, seeds, diffs)
    out.unpaired = {side: sorted(set(a) - set(b), key=_seed_order)
                    for side, a, b in (('baseline', base, other), ('config', other, base))
                    if set(a) - set(b)}
    if diffs:
        out.mean = statistics.fmean(diffs)
    if len(diffs) > 1:
        out.low, out.high = t_interval(diffs)
    return out


def _seed_order(seed):
    return (0, int(seed), '') if str(seed).lstrip('-').isdigit() else (1, 0, str(seed))


# --------------------------------------------------------------------------
# differences besides the design


def _plain(value):
    """ConfigDict / tuple -> dict / tuple, so equal settings compare equal."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    return value


def _flatten(value, key, out):
    if isinstance(value, dict):
        # _scope_ is where mmengine found a base file, not a setting.
        for k in sorted((k for k in value if k != '_scope_'), key=str):
            _flatten(value[k], f'{key}.{k}', out)
    elif isinstance(value, tuple) and any(isinstance(v, (dict, tuple)) for v in value):
        for i, v in enumerate(value):
            _flatten(v, f'{key}[{i}]', out)
    else:
        out[key] = value


def _pipeline(loader):
    """The pipeline of a dataloader's dataset, through dataset wrappers
    (RepeatDataset, ClassBalancedDataset, ConcatDataset: its first)."""
    dataset = (loader or {}).get('dataset') or {}
    for _ in range(8):
        if not isinstance(dataset, dict):
            break
        if 'pipeline' in dataset:
            return dataset['pipeline'] or ()
        dataset = dataset.get('dataset') or (dataset.get('datasets') or [None])[0]
    return ()


def config_fields(cfg):
    """The keys of a resolved config that the difference check compares.

    Args:
        cfg (mmengine.Config | dict): a resolved config.

    Returns:
        dict[str, dict[str, object]]: group ('host class', 'schedule',
        'image size') -> {dotted key: value}.
    """
    cfg = _plain(cfg.to_dict() if hasattr(cfg, 'to_dict') else cfg)
    model = cfg.get('model') or {}
    backbone = model.get('backbone') or {}
    host = {f'model.backbone.{k}': backbone[k] for k in ('type', 'depth', 'arch')
            if k in backbone}
    schedule = {}
    for key in ('train_cfg', 'optim_wrapper', 'param_scheduler'):
        if cfg.get(key) is not None:
            _flatten(cfg[key], key, schedule)
    batch = (cfg.get('train_dataloader') or {}).get('batch_size')
    if batch is not None:
        schedule['train_dataloader.batch_size'] = batch
    size = {}
    for loader in ('train_dataloader', 'val_dataloader'):
        seen = {}
        for t in _pipeline(cfg.get(loader)):
            if not isinstance(t, dict):
                continue
            name = str(t.get('type'))
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                name = f'{name}#{seen[name]}'
            for k in SIZE_KEYS:
                if k in t:
                    _flatten(t[k], f'{loader} {name}.{k}', size)
    pre = model.get('data_preprocessor') or {}
    for k in ('size', 'size_divisor', 'pad_size_divisor'):
        if k in pre:
            size[f'model.data_preprocessor.{k}'] = pre[k]
    return {'host class': host, 'schedule': schedule, 'image size': size}


def load_config(path):
    """mmengine's resolved Config of ``path``; MMExtError in one line when it
    cannot be read."""
    from mmengine.config import Config
    try:
        return Config.fromfile(path)
    except Exception as exc:  # noqa: B902  (one line naming the file)
        raise MMExtError(f'cannot read config {path} to compare it: '
                         f'{type(exc).__name__}: {exc}') from exc


_ABSENT = '(not set)'


def field_differences(fields_by_label):
    """The compared keys whose value is not the same in all configs.

    Args:
        fields_by_label (dict[str, dict]): label -> :func:`config_fields`.

    Returns:
        list[tuple[str, str, dict]]: (group, key, {label: value}) in group
        order, then key order; a key missing from a config has the value
        '(not set)'.
    """
    out = []
    for group in GROUPS:
        keys = sorted({k for f in fields_by_label.values() for k in f[group]})
        for key in keys:
            values = {label: f[group].get(key, _ABSENT) for label, f in fields_by_label.items()}
            if len({repr(v) for v in values.values()}) > 1:
                out.append((group, key, values))
    return out


def show(value):
    """A config value as the leaderboard prints it."""
    if isinstance(value, tuple):
        return '(' + ', '.join(show(v) for v in value) + (',)' if len(value) == 1 else ')')
    return str(value)
