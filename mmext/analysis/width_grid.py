"""Evaluate one slimmable (MutualNet-trained) checkpoint over a grid of widths
and input resolutions: the accuracy-vs-FLOPs curve of one network.

For every (width ``w``, resolution ``r``) point, as the official MutualNet
evaluation (taoyang1122/MutualNet ``train.py`` + ``ComputePostBN.py``):

1. the network runs at width ``w`` (:func:`~mmext.models.layers.slimmable.
   set_width_mult`);
2. its BN statistics at that point are recomputed on training batches
   (:func:`~mmext.models.layers.slimmable.calibrate_bn`: reset, cumulative
   average over ``calib_batches`` batches, default 8), each batch of the
   config's training pipeline resized by ``r`` (bilinear, ``align_corners=True``);
   the same batches serve every point;
3. the test set is evaluated with every ``Resize`` of the test pipeline scaled
   by ``r`` (``scale=(1333, 800)`` at ``r = 0.75`` becomes ``(1000, 600)``): a
   resolution is a scale factor of the config's test size, as the official
   list ``[224, 192, 160, 128]`` is of 224;
4. the FLOPs are those of the whole model's tensor forward (backbone, neck,
   heads; no post-processing) on the first test image at that size, counted by
   :func:`mmext.analysis.flops.count_flops` at width ``w``.

The results are a markdown table, a JSON file and a PNG curve drawn with the
leaderboard's axis and label placement (:mod:`mmext.analysis.leaderboard`).
The tool is ``tools/analysis_tools/mutualnet_eval.py``.
"""
import copy
import dataclasses
import itertools
import json
import os
import os.path as osp

from mmext.models.layers.slimmable import calibrate_bn, check_width_mult, set_width_mult
from mmext.utils.embedded import innermost_dataset
from mmext.utils.errors import MMExtError

from .leaderboard import METRICS, _flops_axis, _place_labels, _plt


@dataclasses.dataclass
class GridPoint:
    """One evaluated (width, resolution) point.

    Attributes:
        width_mult (float): Width multiplier.
        resolution (float): Scale factor of the test size.
        input_shape (tuple[int, int]): (H, W) of the first test image as the
            model receives it (after the scaled ``Resize`` and padding).
        flops (int): FLOPs of the tensor forward on that image.
        metrics (dict): The evaluator's results.
    """

    width_mult: float
    resolution: float
    input_shape: tuple
    flops: int
    metrics: dict

    def metric(self, keys, scale):
        """The first of ``keys`` in :attr:`metrics`, times ``scale`` (the
        leaderboard's convention: AP in percent), or None."""
        for k in keys:
            if self.metrics.get(k) is not None:
                return float(self.metrics[k]) * scale
        return None


def scale_test_pipeline(cfg, resolution):
    """A copy of ``cfg.test_dataloader`` with the ``scale`` of every
    ``Resize`` of its (innermost) dataset's pipeline multiplied by
    ``resolution`` (rounded to whole pixels).

    Raises:
        MMExtError: the test pipeline has no ``Resize`` with a ``scale``.
    """
    loader = copy.deepcopy(cfg.test_dataloader)
    found = False
    for t in innermost_dataset(loader.dataset).pipeline:
        if t.get('type', '').split('.')[-1] == 'Resize' and t.get('scale') is not None:
            scale = t['scale']
            t['scale'] = (max(1, int(scale * resolution + 0.5)) if isinstance(scale, (int, float))
                          else tuple(max(1, int(s * resolution + 0.5)) for s in scale))
            found = True
    if not found:
        raise MMExtError('the test pipeline has no Resize with a scale, which --resolutions '
                         'scales; add dict(type=\'Resize\', scale=..., keep_ratio=True) to it')
    return loader


def _first_image_flops(model, loader):
    """(input (H, W), FLOPs) of the tensor forward on the first image of
    ``loader``, in eval mode."""
    from .benchmark import _TensorForward
    from .flops import count_flops
    batch = next(iter(loader))
    data = model.data_preprocessor(batch, False)
    x, samples = data['inputs'][:1], data['data_samples'][:1]
    model.eval()
    return tuple(x.shape[-2:]), count_flops(_TensorForward(model, samples), (x, )).total


def evaluate_grid(runner, train_dataloader, widths, resolutions, calib_batches=8, log=print):
    """Evaluate ``runner``'s model at every (width, resolution).

    Args:
        runner (mmengine.runner.Runner): Built from the config, checkpoint
            loaded, test loop not run yet (its ``test_dataloader`` /
            ``test_cfg`` are still configs).
        train_dataloader (Iterable): Batches for the BN calibration (the
            first ``calib_batches`` are kept and reused at every point).
        widths (Sequence[float]): Width multipliers in ``(0, 1]``.
        resolutions (Sequence[float]): Scale factors of the test size.
        calib_batches (int): Batches per calibration. Default: 8.
        log (callable): Progress lines.

    Returns:
        list[GridPoint]: One per point, widths inner.

    Raises:
        MMExtError: a width outside ``(0, 1]``, a non-positive resolution, or
            a model without slimmable modules.
    """
    model = getattr(runner.model, 'module', runner.model)
    try:
        widths = [check_width_mult(w, '--widths') for w in widths]
        set_width_mult(model, widths[0])
    except ValueError as exc:
        raise MMExtError(str(exc)) from exc
    if any(r <= 0 for r in resolutions):
        raise MMExtError(f'--resolutions {list(resolutions)}: scale factors must be positive')
    batches = list(itertools.islice(iter(train_dataloader), calib_batches))
    if not batches:
        raise MMExtError('the training dataloader gave no batch for the BN calibration')
    test_cfg = copy.deepcopy(runner._test_loop) if isinstance(runner._test_loop, dict) else \
        dict(type='TestLoop')
    cfg = runner.cfg
    points = []
    for r in resolutions:
        loader_cfg = scale_test_pipeline(cfg, r)
        for w in widths:
            set_width_mult(model, w)
            calibrate_bn(model, batches, w, resize=None if r == 1 else r,
                         num_batches=calib_batches)
            runner._test_dataloader = copy.deepcopy(loader_cfg)
            runner._test_loop = copy.deepcopy(test_cfg)
            metrics = runner.test()
            shape, flops = _first_image_flops(model, runner.test_loop.dataloader)
            points.append(GridPoint(w, r, shape, flops, dict(metrics)))
            log(f'width {w:g}, resolution {r:g} ({shape[0]}x{shape[1]}): '
                f'{flops / 1e9:.3f} GFLOPs, {_metric_text(points[-1])}')
    return points


def _metric_cols(points):
    return [(col, keys, scale) for col, keys, scale in METRICS
            if any(p.metric(keys, scale) is not None for p in points)]


def _metric_text(point):
    cols = _metric_cols([point])
    if not cols:
        return ', '.join(f'{k} {v}' for k, v in point.metrics.items())
    return ', '.join(f'{col} {point.metric(keys, scale):.2f}' for col, keys, scale in cols)


def render_table(points, title=None):
    """Markdown: one row per point (width, resolution, input size, GFLOPs,
    the leaderboard's metrics: box / mask AP in percent, mIoU)."""
    cols = _metric_cols(points)
    lines = [f'# {title}', ''] if title else []
    lines += ['| width | resolution | input (HxW) | GFLOPs | ' +
              ' | '.join(c for c, _, _ in cols) + ' |',
              '|---|---|---|---|' + '---|' * len(cols)]
    for p in points:
        cells = [f'{p.width_mult:g}', f'{p.resolution:g}',
                 f'{p.input_shape[0]}x{p.input_shape[1]}', f'{p.flops / 1e9:.3f}']
        for _, keys, scale in cols:
            v = p.metric(keys, scale)
            cells.append('-' if v is None else f'{v:.2f}')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def draw_curve(points, title=None):
    """Accuracy against GFLOPs, one panel per metric: one line per width
    through its resolutions, each point labelled ``width-resolution`` (the
    paper's ``0.9-224`` naming, with the resolution as a scale factor:
    ``0.90-0.75``).
    The axis and the label placement are the leaderboard's.

    Returns:
        matplotlib.figure.Figure
    """
    plt = _plt()
    cols = _metric_cols(points) or [('metric', (), 1.0)]
    fig, axes = plt.subplots(1, len(cols), figsize=(5.5 * len(cols), 4.2), squeeze=False,
                             layout='constrained')
    placements = []
    for ax, (col, keys, scale) in zip(axes[0], cols):
        texts, xs = [], []
        for w in sorted({p.width_mult for p in points}, reverse=True):
            line = sorted((p for p in points if p.width_mult == w and
                           p.metric(keys, scale) is not None), key=lambda p: p.flops)
            if not line:
                continue
            fx = [p.flops / 1e9 for p in line]
            fy = [p.metric(keys, scale) for p in line]
            color = ax.plot(fx, fy, 'o-', label=f'width {w:.2f}')[0].get_color()
            xs += fx
            for p, x, y in zip(line, fx, fy):
                texts.append(ax.annotate(f'{p.width_mult:.2f}-{p.resolution:.2f}', (x, y),
                                         xytext=(6, 0), textcoords='offset points', fontsize=8,
                                         va='center', color=color, annotation_clip=False))
        if xs:
            _flops_axis(ax, xs)
            ax.margins(y=0.15)
            ax.legend(fontsize=8, loc='lower right')
        ax.set(xlabel='GFLOPs (whole model, first test image)', ylabel=col,
               title=title or f'{col} vs FLOPs')
        ax.grid(alpha=0.3)
        placements.append((ax, texts))
    fig.canvas.draw()
    for ax, texts in placements:
        _place_labels(fig, ax, texts)
    fig.canvas.draw()
    return fig


def write_results(points, out_dir, title=None):
    """``width_grid.md``, ``width_grid.json`` and ``width_grid.png`` in
    ``out_dir``; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    md, js, png = (osp.join(out_dir, f'width_grid.{ext}') for ext in ('md', 'json', 'png'))
    with open(md, 'w') as f:
        f.write(render_table(points, title))
    with open(js, 'w') as f:
        json.dump([dataclasses.asdict(p) for p in points], f, indent=1, default=float)
    fig = draw_curve(points, title)
    fig.savefig(png, dpi=100, bbox_inches='tight')
    _plt().close(fig)
    return md, js, png
