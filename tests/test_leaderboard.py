"""The leaderboard (tools/analysis_tools/leaderboard.py) and the one-command
comparison (tools/analysis_tools/compare.py).

One real 2-iteration smoke run through compare.py --resources (which also
measures its peak training memory and latency and builds its leaderboard with
the resource view); the other runs are written in mmengine's work-dir format:
two seeds of a segmentation config (aggregated) and a crashed run (listed).
"""
import importlib.util
import json
import os.path as osp
import shutil
import types

import pytest
import yaml
from conftest import CONFIGS, ROOT, run_tool

from mmext.analysis.leaderboard import build_leaderboard, find_runs, local_run_set, read_run

# The model-zoo generator (.dev_scripts/, not a package) reads compare's run sets.
_spec = importlib.util.spec_from_file_location('dev_model_zoo',
                                               osp.join(ROOT, '.dev_scripts', 'model_zoo.py'))
mz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mz)

COMPARE = osp.join(ROOT, 'tools', 'analysis_tools', 'compare.py')
LEADERBOARD = osp.join(ROOT, 'tools', 'analysis_tools', 'leaderboard.py')
DET_CONFIG = osp.join(CONFIGS, 'resnet', 'retinanet_r18_fpn-c128_1x_coco.py')
SEG_NAME = 'upernet_r18-c128_4xb4-160k_ade20k-512x512.py'

HEADER = """2026/11/23 10:00:00 - mmengine - INFO -
------------------------------------------------------------
System environment:
    sys.platform: linux
    Python: 3.11.7
    CUDA available: False
    numpy_random_seed: {seed}
    PyTorch: 2.14.1
    MMEngine: 0.10.7

Runtime environment:
    seed: {seed}
------------------------------------------------------------
2026/11/23 10:00:01 - mmengine - INFO - Checkpoints will be saved to {work_dir}.
"""

DUMPED = """default_scope = 'mmseg'
model = dict(type='EncoderDecoder', backbone=dict(type='ResNetV1c', depth=18),
             decode_head=dict(type='UPerHead'))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=4, val_interval=2)
randomness = dict(seed={seed})
embedded = dict(task='ade20k', preset='smoke', data_root='data/embedded')
"""


def cells(line):
    """The cells of a Markdown table row, stripped of their padding."""
    return [c.strip() for c in line.strip().strip('|').split(' | ')]


def fake_run(work_dir, seed, mious, crash=False, stamp='20261123_100000', log_metrics=None):
    """A work dir as tools/train.py leaves it: dumped config, log, scalars.
    ``log_metrics`` puts other mIoU values into the log's val lines than
    scalars.json has (the leaderboard must read scalars.json)."""
    log_dir = work_dir / stamp
    (log_dir / 'vis_data').mkdir(parents=True)
    (work_dir / SEG_NAME).write_text(DUMPED.format(seed=seed))
    log = HEADER.format(seed=seed, work_dir=work_dir)
    rows = []
    for i, miou in enumerate(mious):
        it = 2 * (i + 1)
        rows.append(dict(loss=2.0 / it, lr=1e-3, iter=it, step=it))
        rows.append(dict(aAcc=80.0, mIoU=miou, mAcc=30.0, step=it))
        logged = (log_metrics or mious)[i]
        log += (f'2026/11/23 10:00:0{i + 2} - mmengine - INFO - Saving checkpoint at {it} '
                f'iterations\n2026/11/23 10:00:0{i + 2} - mmengine - INFO - Iter(val) [4/4]'
                f'    aAcc: 80.0000  mIoU: {logged:.4f}  mAcc: 30.0000\n')
    if crash:
        log += ('Traceback (most recent call last):\n  File "train.py", line 1, in <module>\n'
                'RuntimeError: CUDA out of memory (synthetic)\n')
    (log_dir / f'{stamp}.log').write_text(log)
    (log_dir / 'vis_data' / 'scalars.json').write_text(
        ''.join(json.dumps(r) + '\n' for r in rows))
    return work_dir


def fake_cost(path):
    return types.SimpleNamespace(params=11_200_000, flops=2_060_000_000, backbone='ResNetV1c-18')


def fake_low_bit_cost(path):
    """A ResNetV1c-18 cost; an XNOR one (15 low-bit layers) for a config
    path naming xnor."""
    from mmext.analysis.backbone_costs import BackboneCost
    if 'xnor' in path:
        return BackboneCost(path, 'ResNetV1c-18', 11_200_000, 2_060_000_000, 512,
                            low_bit_layers=15, low_bit_macs=1_800_000_000,
                            bops=1_800_000_000, effective_bytes=5_120_000)
    return BackboneCost(path, 'ResNetV1c-18', 11_200_000, 2_060_000_000, 512,
                        effective_bytes=44_800_000)


@pytest.fixture(scope='module')
def compared(tmp_path_factory, embedded_root):
    """compare.py --resources on one config, 2 iterations, seed 3: the real
    run (latency of 2 timed passes)."""
    work = tmp_path_factory.mktemp('compare')
    proc = run_tool(COMPARE, DET_CONFIG, '--seeds', '3', '--embedded', 'smoke', '--data-root',
                    embedded_root, '--work-dir', str(work), '--resources',
                    '--latency-repeats', '2', '--cfg-options', 'train_cfg.max_iters=2',
                    'train_cfg.val_interval=2')
    yield work, proc
    shutil.rmtree(work, ignore_errors=True)


def test_compare_one_command(compared):
    work, proc = compared
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    run_dir = work / 'retinanet_r18_fpn-c128_1x_coco' / 'seed3'
    meta = json.loads((run_dir / 'run.json').read_text())
    assert meta['returncode'] == 0 and meta['seed'] == 3 and meta['embedded'] == 'smoke'
    board = work / 'leaderboard'
    for name in ('leaderboard.md', 'accuracy_vs_flops.png', 'curves.png'):
        assert (board / name).stat().st_size > 0
    md = (board / 'leaderboard.md').read_text()
    row = cells(next(line for line in md.splitlines() if line.startswith('| RetinaNet')))
    # method, backbone, design, params (M) from backbone_cost, FLOPs (G), latency
    assert row[:3] == ['RetinaNet', 'ResNet-18', 'resnet']
    assert float(row[3]) == pytest.approx(11.18, abs=0.01)  # ResNet-18 without the fc
    assert float(row[4]) > 1.0 and float(row[5]) > 0
    assert 'retinanet_r18_fpn-c128_1x_coco.py' in row[-1]
    run = read_run(str(run_dir))
    assert run.status == 'finished' and run.seed == 3 and run.last_iter == 2
    assert 'box AP' in run.final and 'PyTorch' in run.environment
    # --resources: the peak memory of the 2 training iterations, measured
    # (train --peak-memory), and the benchmark's latency, in the resource view.
    memory = json.loads((run_dir / 'peak_memory.json').read_text())
    assert memory['iters'] == 2 and memory['peak_mib'] > memory['baseline_mib'] > 0
    assert (run_dir.parent / 'benchmark.json').is_file() and run.latency_ms > 0
    resources = md.split('## Resources')[1].split('\n## ')[0]
    res_row = cells(next(ln for ln in resources.splitlines() if ln.startswith('| resnet')))
    assert res_row[1] == f'{run.final["box AP"]:.2f}' and res_row[2:5] == row[3:5] + ['44.71']
    assert res_row[5:] == [f'{memory["peak_mib"]:.1f}', f'{memory["increase_mib"]:.1f}',
                           row[5]]
    # The run set for the model zoo (.dev_scripts/model_zoo.py --record), and
    # the page of the compared config with this run as its local figure.
    rel = 'configs/resnet/retinanet_r18_fpn-c128_1x_coco.py'
    (local, ) = mz.validate_local(yaml.safe_load((board / 'local_results.yml').read_text()),
                                  mz.list_configs())
    assert local['seed'] == '3' and 'smoke' in local['command'] and local['commit']
    assert local['results'] == {rel: {k: round(v, 2) for k, v in run.final.items()}}
    assert local['resources'][rel]['peak_train_mib'] == memory['peak_mib']
    assert '--resources' in local['command'] and '--peak-memory' in local['command']
    page = mz.generate(local_file=str(board / 'local_results.yml'), configs=[rel])
    assert page.startswith('# Model zoo') and '### resnet: RetinaNet' in page
    assert f'box AP {run.final["box AP"]:.2f} [L1](#local-runs)' in page
    # The compared config only: its design table and its resource-view row,
    # with the measured figures.
    assert page.count('](../configs/') == 2
    assert f' {memory["peak_mib"]:.2f} ' in page.split('\n## Resource view\n')[1]
    assert '- L1: ' in page and 'seed 3' in page


def test_leaderboard_aggregates_seeds_and_lists_crashes(compared, tmp_path):
    work, _ = compared
    runs = tmp_path / 'runs'
    shutil.copytree(work / 'retinanet_r18_fpn-c128_1x_coco' / 'seed3', runs / 'retina_seed3')
    fake_run(runs / 'seg_seed0', 0, [20.0, 30.0])
    fake_run(runs / 'seg_seed1', 1, [25.0, 34.0])
    fake_run(runs / 'seg_crash', 2, [10.0], crash=True)
    unfinished = fake_run(runs / 'seg_half', 5, [12.0])  # stopped at 2 of 4 iterations
    assert read_run(str(unfinished)).status == 'unfinished'

    out = tmp_path / 'board'
    result = build_leaderboard([str(runs / '*'), str(tmp_path / 'nowhere')], str(out),
                               cost_fn=fake_cost)
    status = {osp.basename(r.work_dir): r.status for r in result['runs']}
    assert status == {'retina_seed3': 'finished', 'seg_seed0': 'finished',
                      'seg_seed1': 'finished', 'seg_crash': 'crashed',
                      'seg_half': 'unfinished', 'nowhere': 'missing'}
    assert len(result['entries']) == 2
    md = (out / 'leaderboard.md').read_text()
    row = cells(next(line for line in md.splitlines() if line.startswith('| UPerHead')))
    assert row[1:5] == ['ResNetV1c-18', 'resnet', '11.20', '2.06']
    assert row[8] == '32.00 ± 2.83'  # final mIoU of seeds 0 and 1: 30, 34
    assert row[9] == 'mIoU 34.00' and row[10] == '2' and row[11] == '0, 1'
    assert SEG_NAME in row[12]
    problems = {cells(line)[0].strip('`').split('/')[-1]: cells(line)[1:]
                for line in md.split('## Missing, crashed or unfinished runs')[1].splitlines()
                if line.startswith('| `')}
    assert problems['seg_crash'] == ['crashed', 'RuntimeError: CUDA out of memory (synthetic)']
    assert problems['seg_half'] == ['unfinished', 'stopped at iteration 2 of 4']
    assert problems['nowhere'][0] == 'missing'
    assert (out / 'accuracy_vs_flops.png').stat().st_size > 0
    assert (out / 'curves.png').stat().st_size > 0
    assert len(find_runs([str(runs)])) == 5  # a parent folder finds the runs below it
    # As a run set of the model zoo's local results: means over the seeds of
    # the finished runs, repository configs only, valid for the generator.
    entry = local_run_set(result['entries'], 'python tools/train.py CONFIG', date='2026-11-24')
    seg = 'configs/resnet/' + SEG_NAME
    assert entry['results'][seg] == {'mIoU': 32.0}  # the leaderboard's metric columns
    assert set(entry['results']) == {seg, 'configs/resnet/retinanet_r18_fpn-c128_1x_coco.py'}
    assert entry['seed'] == '0 1 3' and 'means over the seeds' in entry['note']
    assert entry['date'] == '2026-11-24' and entry['machine']
    assert mz.validate_local({'runs': [entry]}, mz.list_configs())[0]['results'] == \
        entry['results']


def test_metrics_come_from_scalars_json(tmp_path):
    # The log's val lines say otherwise; mmengine's scalars.json is read.
    run = read_run(str(fake_run(tmp_path / 'a', 0, [20.0, 30.0], log_metrics=[1.0, 2.0])))
    assert run.status == 'finished' and run.final == {'mIoU': 30.0}
    assert run.val_curve == {'mIoU': [(2, 20.0), (4, 30.0)]} and run.best == {'mIoU': 30.0}
    assert run.losses == [(2, 1.0), (4, 0.5)] and run.last_iter == 4 and run.max_iters == 4
    # Without scalars.json there are no metrics, whatever the log says.
    (tmp_path / 'a' / '20261123_100000' / 'vis_data' / 'scalars.json').unlink()
    run = read_run(str(tmp_path / 'a'))
    assert run.final == {} and run.status == 'unfinished'


def test_leaderboard_cli(tmp_path):
    fake_run(tmp_path / 'runs' / 'a', 0, [20.0, 30.0])
    proc = run_tool(LEADERBOARD, str(tmp_path / 'runs'), '--out', str(tmp_path / 'lb'),
                    '--no-costs')
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = cells(next(ln for ln in proc.stdout.splitlines() if ln.startswith('| UPerHead')))
    assert row[:6] == ['UPerHead (EncoderDecoder)', 'ResNetV1c-18', 'resnet', '-', '-', '-']
    proc = run_tool(LEADERBOARD, str(tmp_path / 'empty'), '--out', str(tmp_path / 'lb2'))
    assert proc.returncode == 0  # listed as missing, not an error
    assert 'missing' in proc.stdout


def test_leaderboard_low_bit_columns(tmp_path):
    """With a low-bit backbone among the entries (cost fields of
    mmext.analysis.low_bit) the table gains size, full-precision FLOPs and
    BOPs; a full-precision row shows its FP32 size, all its FLOPs, 0 BOPs."""
    from mmext.analysis.leaderboard import attach_costs, group_runs, render_markdown
    fake_run(tmp_path / 'fp', 0, [20.0, 30.0])
    fake_run(tmp_path / 'low', 0, [10.0, 15.0])
    # Another config name: its own row (a dumped config outside configs/).
    (tmp_path / 'low' / SEG_NAME).rename(tmp_path / 'low' / 'upernet_r18-xnor_toy.py')

    runs = [read_run(str(tmp_path / name)) for name in ('fp', 'low')]
    entries = group_runs(runs)
    assert attach_costs(entries, fake_low_bit_cost) == []
    md = render_markdown(runs, entries)
    lines = md.splitlines()
    header = cells(next(ln for ln in lines if ln.startswith('| method')))
    assert header[3:9] == ['params (M)', 'FLOPs (G)', 'size (MB)', 'full-precision FLOPs (G)',
                           'BOPs (G)', 'latency (ms)']
    rows = [cells(ln) for ln in lines if ln.startswith('| UPerHead')]
    assert [r[3:8] for r in rows] == [['11.20', '2.06', '44.80', '2.06', '0.00'],
                                      ['11.20', '2.06', '5.12', '0.26', '1.80']]
    assert 'BOPs = MACs x weight_bits x activation_bits' in md
    # Without a low-bit entry the table is as before.
    fp_only = render_markdown(runs[:1], entries[:1])
    assert 'BOPs' not in fp_only and 'size (MB)' not in fp_only
