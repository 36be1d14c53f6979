"""The leaderboard's baseline view (mmext.analysis.baseline): the paired
interval on synthetic runs with a known difference, the warning when compared
configs differ besides the design, and the accuracy-vs-FLOPs plot's text
(inside the figure, tick labels apart). No training: runs are written in
mmengine's work-dir layout."""
import importlib.util
import json
import os.path as osp
import random
import types

import pytest
from conftest import CONFIGS, ROOT, run_tool

from mmext.analysis.baseline import (config_fields, field_differences, load_config,
                                     paired_difference, t_interval)
from mmext.analysis.leaderboard import (Entry, Run, build_leaderboard, draw_accuracy_vs_flops,
                                        short_labels)

LEADERBOARD = osp.join(ROOT, 'tools', 'analysis_tools', 'leaderboard.py')
COMPARE = osp.join(ROOT, 'tools', 'analysis_tools', 'compare.py')

# A dumped segmentation config as tools/train.py leaves it (the keys the
# leaderboard and the difference check read).
DUMPED = """default_scope = 'mmseg'
model = dict(type='EncoderDecoder', backbone=dict(type='{host}', depth=18),
             decode_head=dict(type='UPerHead'))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=2)
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr={lr}, momentum=0.9))
param_scheduler = [dict(type='PolyLR', power=0.9, begin=0, end=2, by_epoch=False)]
train_dataloader = dict(batch_size=2, dataset=dict(type='RepeatDataset', times=2, dataset=dict(
    type='ADE20KDataset', pipeline=[dict(type='LoadImageFromFile'),
                                    dict(type='RandomCrop', crop_size=({crop}, {crop}))])))
randomness = dict(seed={seed})
"""


def write_run(work_dir, name, seed, miou, host='ResNetV1c', lr=0.01, crop=512):
    """One finished 2-iteration run of config ``name`` with final mIoU ``miou``."""
    stamp = work_dir / '20261201_030000'
    (stamp / 'vis_data').mkdir(parents=True)
    (work_dir / f'{name}.py').write_text(
        DUMPED.format(host=host, lr=lr, crop=crop, seed=seed))
    (work_dir / 'run.json').write_text(json.dumps(
        dict(config=f'/elsewhere/{name}.py', seed=seed, embedded='smoke', returncode=0)))
    (stamp / '20261201_030000.log').write_text('PyTorch: 2.14.1\n')
    (stamp / 'vis_data' / 'scalars.json').write_text(
        json.dumps(dict(loss=1.0, iter=2, step=2)) + '\n' +
        json.dumps(dict(mIoU=miou, step=2)) + '\n')
    return work_dir


def entry(name, values, seeds=None, flops=2_059_500_000):
    seeds = range(len(values)) if seeds is None else seeds
    return Entry([Run(work_dir=f'/runs/{name}/{s}', status='finished', seed=s,
                      config=f'configs/{name}.py', final={'mIoU': v}, flops=flops,
                      params=11_200_000) for s, v in zip(seeds, values)])


def test_t_interval_known_values():
    # d = 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.3027 (Student's t table).
    low, high = t_interval([1.0, 2.0, 3.0])
    assert low == pytest.approx(2 - 4.3027 / 3 ** 0.5, abs=1e-3)
    assert high == pytest.approx(2 + 4.3027 / 3 ** 0.5, abs=1e-3)
    with pytest.raises(ValueError, match='at least two'):
        t_interval([1.0])


def test_paired_difference_finds_a_known_shift():
    rng = random.Random(0)
    # Seeds move both configs a lot (sd 2), the design adds 1.5 (+- 0.1):
    # pairing by seed removes the seed's share.
    base = [30 + rng.gauss(0, 2) for _ in range(5)]
    shifted = [b + 1.5 + rng.gauss(0, 0.1) for b in base]
    d = paired_difference(entry('resnet/a', base), entry('se/b', shifted), 'mIoU')
    assert d.n == 5 and d.unpaired == {}
    assert d.low < 1.5 < d.high and d.low > 0
    assert d.verdict == 'better'
    worse = paired_difference(entry('se/b', shifted), entry('resnet/a', base), 'mIoU')
    assert worse.high < 0 and worse.verdict == 'worse'
    # A zero-mean difference is within noise.
    noise = [0.4, -0.3, 0.1, -0.2, 0.05]
    d = paired_difference(entry('resnet/a', base),
                          entry('se/b', [b + n for b, n in zip(base, noise)]), 'mIoU')
    assert d.low < 0 < d.high and d.verdict == 'within noise'
    assert paired_difference(entry('resnet/a', base), entry('se/b', base), 'box AP') is None


def test_paired_difference_one_seed_and_unpaired_seeds():
    d = paired_difference(entry('resnet/a', [30.0]), entry('se/b', [31.0]), 'mIoU')
    assert d.n == 1 and d.mean == pytest.approx(1.0) and d.low is None
    assert d.verdict == 'one paired seed: no interval'
    # Seeds 0, 1, 2 against 1, 2, 3: seeds 1 and 2 pair, 0 and 3 are left out.
    d = paired_difference(entry('resnet/a', [30.0, 31.0, 32.0]),
                          entry('se/b', [31.5, 32.0, 40.0], seeds=[1, 2, 3]), 'mIoU')
    assert d.seeds == ['1', '2'] and d.diffs == pytest.approx([0.5, 0.0])
    assert d.unpaired == {'baseline': ['0'], 'config': ['3']}
    d = paired_difference(entry('resnet/a', [30.0]), entry('se/b', [31.0], seeds=[7]), 'mIoU')
    assert d.n == 0 and d.verdict == 'no paired seed'


def test_differences_in_schedule_are_found(tmp_path):
    for name, lr, iters in (('a', 0.01, 2), ('b', 0.02, 4)):
        (tmp_path / f'{name}.py').write_text(
            DUMPED.format(host='ResNetV1c', lr=lr, crop=512, seed=0).replace(
                'max_iters=2', f'max_iters={iters}'))
    fields = {n: config_fields(load_config(str(tmp_path / f'{n}.py'))) for n in 'ab'}
    diffs = field_differences(fields)
    assert [(g, k) for g, k, _ in diffs] == [('schedule', 'optim_wrapper.optimizer.lr'),
                                             ('schedule', 'train_cfg.max_iters')]
    assert diffs[1][2] == {'a': 2, 'b': 4}
    # The crop size inside a dataset wrapper counts as image size.
    assert fields['a']['image size'] == {'train_dataloader RandomCrop.crop_size': (512, 512)}


def test_differences_in_host_class_of_the_se_smoke_pair():
    # The smoke pair: mmseg's ResNetV1c against mmext's (SE needs its
    # plugin slot); schedule and image size agree.
    base = config_fields(load_config(
        osp.join(CONFIGS, 'resnet', 'upernet_r18-c128_4xb4-160k_ade20k-512x512.py')))
    se = config_fields(load_config(
        osp.join(CONFIGS, 'se', 'upernet_r18-c128-se_4xb4-160k_ade20k-512x512.py')))
    assert field_differences({'resnet': base, 'se': se}) == [
        ('host class', 'model.backbone.type', {'resnet': 'ResNetV1c', 'se': 'mmext.ResNetV1c'})]


def cells(line):
    return [c.strip() for c in line.strip().strip('|').split(' | ')]


def test_leaderboard_baseline_view_and_warning(tmp_path):
    runs = tmp_path / 'runs'
    for seed, (b, s) in enumerate([(30.0, 31.6), (28.0, 29.4), (33.0, 34.5)]):
        write_run(runs / 'base' / f'seed{seed}', 'upernet_base', seed, b)
        write_run(runs / 'se' / f'seed{seed}', 'upernet_se', seed, s, host='mmext.ResNetV1c')
        write_run(runs / 'lr' / f'seed{seed}', 'upernet_lr', seed, b + (0.2, -0.3, 0.1)[seed],
                  lr=0.02)
    write_run(runs / 'se' / 'seed3', 'upernet_se', 3, 33.0, host='mmext.ResNetV1c')

    def cost(path):
        se = 'upernet_se' in path
        return types.SimpleNamespace(params=11_250_000 if se else 11_200_000,
                                     flops=2_059_800_000 if se else 2_059_500_000,
                                     backbone='ResNetV1c-18')

    out = tmp_path / 'board'
    result = build_leaderboard([str(runs)], str(out), cost_fn=cost, baseline='upernet_base')
    assert result['baseline'].first.name == 'upernet_base'
    md = (out / 'leaderboard.md').read_text()
    view = md.split('## Against the baseline: upernet_base')[1].split('\n## ')[0]
    rows = {cells(ln)[0]: cells(ln) for ln in view.splitlines()
            if ln.startswith('| upernet_')}
    # config, metric, Δ, CI, pairs, verdict, params x, FLOPs x, latency x, also differs in
    assert rows['upernet_se'][1:3] == ['mIoU', '+1.50'] and rows['upernet_se'][4] == '3'
    assert rows['upernet_se'][5] == 'better'
    assert rows['upernet_se'][6:] == ['1.004x', '1.000x', '-', 'host class']
    assert rows['upernet_lr'][5] == 'within noise' and rows['upernet_lr'][9] == 'schedule'
    assert 'upernet_se, mIoU: seed 3 only run by upernet_se, left out' in view
    warning = md.split('## Differences besides the design: host class, schedule')[1]
    warning = [cells(ln) for ln in warning.split('\n## ')[0].splitlines()
               if ln.startswith('| upernet_')]
    assert warning == [
        ['upernet_lr', 'schedule', 'optim_wrapper.optimizer.lr', '0.01', '0.02'],
        ['upernet_se', 'host class', 'model.backbone.type', 'ResNetV1c', 'mmext.ResNetV1c']]


def test_leaderboard_warning_without_baseline_and_cli(tmp_path):
    runs = tmp_path / 'runs'
    write_run(runs / 'a', 'upernet_a', 0, 30.0)
    write_run(runs / 'b', 'upernet_b', 0, 31.0, crop=256)
    proc = run_tool(LEADERBOARD, str(runs), '--out', str(tmp_path / 'lb'), '--no-costs',
                    '--baseline', 'upernet_a')
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = cells(next(ln for ln in proc.stdout.splitlines() if ln.startswith('| upernet_b')))
    assert row[4:6] == ['1', 'one paired seed: no interval'] and row[3] == '-'
    assert '## Differences besides the design: image size' in proc.stdout
    proc = run_tool(LEADERBOARD, str(runs), '--out', str(tmp_path / 'lb'), '--no-costs',
                    '--baseline', 'upernet_c')
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        'leaderboard: error: --baseline upernet_c: no run of that config among the work dirs '
        '(their configs: upernet_a, upernet_b); name one of them or add its work dir')
    # Without a baseline the differences are listed across the compared set.
    result = build_leaderboard([str(runs)], str(tmp_path / 'lb2'), with_costs=False)
    md = open(result['files'][0]).read()
    warning = [cells(ln) for ln in md.splitlines() if ln.startswith('| image size')]
    assert warning == [['image size', 'train_dataloader RandomCrop.crop_size', '(512, 512)',
                        'upernet_a'],
                       ['image size', 'train_dataloader RandomCrop.crop_size', '(256, 256)',
                        'upernet_b']]
    assert '## Against the baseline' not in md


def _assert_readable(fig):
    """Every text inside the figure, point labels inside their axes, x tick
    labels short and apart."""
    import matplotlib.text
    renderer = fig.canvas.get_renderer()
    fig_box = fig.bbox
    drawn_ticks, all_ticks = [], set()
    for ax in fig.axes:
        for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            for t in axis.get_ticklabels():
                all_ticks.add(t)
                pos = t.get_position()[0 if axis is ax.xaxis else 1]
                if t.get_text() and min(lo, hi) <= pos <= max(lo, hi):
                    drawn_ticks.append(t)
    for t in fig.findobj(matplotlib.text.Text):
        if not t.get_visible() or not t.get_text() or (t in all_ticks and t not in drawn_ticks):
            continue  # a tick label outside the view is not drawn
        box = t.get_window_extent(renderer)
        assert fig_box.x0 - 1 <= box.x0 and box.x1 <= fig_box.x1 + 1, t.get_text()
        assert fig_box.y0 - 1 <= box.y0 and box.y1 <= fig_box.y1 + 1, t.get_text()
    for ax in fig.axes:
        ax_box = ax.get_window_extent(renderer)
        labels = [t for t in ax.texts if t.get_text()]
        assert labels
        for t in labels:
            box = matplotlib.text.Text.get_window_extent(t, renderer)
            assert ax_box.x0 <= box.x0 and box.x1 <= ax_box.x1, t.get_text()
            assert ax_box.y0 <= box.y0 and box.y1 <= ax_box.y1, t.get_text()
        for a in labels:  # point labels do not cover each other
            for b in labels:
                if a is not b:
                    assert not matplotlib.text.Text.get_window_extent(a, renderer).overlaps(
                        matplotlib.text.Text.get_window_extent(b, renderer))
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticklabels()
                 if t.get_text() and lo <= t.get_position()[0] <= hi]
        assert len(ticks) >= 2
        boxes = sorted((t.get_window_extent(renderer) for t in ticks), key=lambda b: b.x0)
        assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:]))
        assert all(len(t.get_text()) <= 4 for t in ticks), [t.get_text() for t in ticks]


@pytest.mark.parametrize('flops', [(2_059_500_000, 2_059_800_000, 2_059_600_000),
                                   (320_000_000, 4_120_000_000, 4_125_000_000)])
def test_accuracy_vs_flops_plot_is_readable(flops):
    import matplotlib.pyplot as plt
    names = ['resnet/upernet_r18-c128_4xb4-160k_ade20k-512x512',
             'se/upernet_r18-c128-se_4xb4-160k_ade20k-512x512',
             'a_design_with_a_long_folder_name/upernet_r18-x_4xb4-160k_ade20k-512x512']
    entries = [entry(n, [30.0 + i * 0.05, 30.1 + i * 0.05], flops=f)
               for i, (n, f) in enumerate(zip(names, flops))]
    labels = short_labels(entries)
    assert labels == ['resnet', 'se', 'a_design_with_a_long_folder_name']
    fig = draw_accuracy_vs_flops(entries, labels, baseline=entries[0])
    try:
        assert sorted(t.get_text() for t in fig.axes[0].texts if t.get_text()) == \
            sorted(['resnet (baseline)', 'se', 'a_design_with_a_long_folder_name'])
        _assert_readable(fig)
    finally:
        plt.close(fig)


def test_short_labels_tell_configs_of_one_folder_apart():
    entries = [entry('resnet/retinanet_r18_fpn_1x_coco', [1.0]),
               entry('resnet/retinanet_r50_fpn_1x_coco', [1.0]),
               entry('se/retinanet_r50-se_fpn_1x_coco', [1.0])]
    assert short_labels(entries) == ['resnet r18', 'resnet r50', 'se']


def test_compare_trains_the_baseline_too(tmp_path):
    spec = importlib.util.spec_from_file_location('compare_tool', COMPARE)
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    a, b = str(tmp_path / 'a.py'), str(tmp_path / 'b.py')
    assert compare.with_baseline([a], b) == [b, a]
    assert compare.with_baseline([a, b], osp.join(str(tmp_path), '.', 'b.py')) == [a, b]
    assert compare.with_baseline([a], None) == [a]
    assert compare.parse_args([a, '--baseline', b]).baseline == b
