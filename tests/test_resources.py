"""The leaderboard's resource view: accuracy, params, FLOPs, size / BOPs,
measured peak training memory and latency per config (run folders in the
layout compare.py --resources leaves; the real one-command run is in
tests/test_leaderboard.py)."""
import importlib.util
import json
import os.path as osp

from conftest import ROOT
from test_leaderboard import SEG_NAME, cells, fake_low_bit_cost, fake_run

from mmext.analysis.leaderboard import (attach_costs, build_leaderboard, group_runs,
                                        local_run_set, read_run, resources_section)

_spec = importlib.util.spec_from_file_location('dev_model_zoo',
                                               osp.join(ROOT, '.dev_scripts', 'model_zoo.py'))
mz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mz)


def _memory(run_dir, peak, increase):
    (run_dir / 'peak_memory.json').write_text(json.dumps(dict(
        method='hwm', iters=4, device='cpu', baseline_mib=peak - increase, peak_mib=peak,
        increase_mib=increase, peak_iter=1)))


def _latency(config_dir, ms):
    # tools/analysis_tools/benchmark.py --json, trimmed to what is read.
    (config_dir / 'benchmark.json').write_text(json.dumps(dict(
        shape=[224, 224], batch=1, models=[dict(infer=dict(median=ms))])))


def _runs(tmp_path):
    """A full-precision config measured on two seeds (memory and latency) and
    a low-bit one measured on neither."""
    fp = tmp_path / 'runs' / 'fp'
    for seed, miou, (peak, inc) in [(0, 30.0, (1000.0, 300.0)), (1, 34.0, (1100.0, 340.0))]:
        fake_run(fp / f'seed{seed}', seed, [20.0, miou])
        _memory(fp / f'seed{seed}', peak, inc)
    _latency(fp, 55.25)
    low = fake_run(tmp_path / 'runs' / 'low' / 'seed0', 0, [10.0, 15.0])
    # Another config name: its own row (a dumped config outside configs/).
    (low / SEG_NAME).rename(low / 'upernet_r18-xnor_toy.py')
    return tmp_path / 'runs'


def test_resource_table_columns_and_low_bit_row(tmp_path):
    runs_dir = _runs(tmp_path)
    runs = [read_run(str(runs_dir / d)) for d in ('fp/seed0', 'fp/seed1', 'low/seed0')]
    assert runs[0].peak_memory['increase_mib'] == 300.0 and runs[2].peak_memory is None
    assert runs[0].latency_ms == 55.25  # the benchmark json of the config folder
    entries = group_runs(runs)
    assert attach_costs(entries, fake_low_bit_cost) == []
    lines = resources_section(entries, ['resnet', 'xnor'])
    assert lines[0] == '## Resources'
    table = [cells(ln) for ln in '\n'.join(lines).splitlines() if ln.startswith('| ')]
    assert table[0] == ['config', 'mIoU', 'params (M)', 'FLOPs (G)', 'size (MB)',
                        'full-precision FLOPs (G)', 'BOPs (G)', 'peak train memory (MiB)',
                        'train step (MiB)', 'latency (ms)']
    # Medians over the seeds of the measured figures; mean ± std of the metric.
    assert table[2] == ['resnet', '32.00 ± 2.83', '11.20', '2.06', '44.80', '2.06', '0.00',
                        '1050.0', '320.0', '55.2']
    assert table[3] == ['xnor', '15.00', '11.20', '2.06', '5.12', '0.26', '1.80',
                        'not measured', 'not measured', 'not measured']
    assert 'method: hwm' in lines[2]


def test_leaderboard_shows_resources_when_measured(tmp_path):
    runs_dir = _runs(tmp_path)
    result = build_leaderboard([str(runs_dir)], str(tmp_path / 'lb'), cost_fn=fake_low_bit_cost)
    md = (tmp_path / 'lb' / 'leaderboard.md').read_text()
    assert '## Resources' in md and md.index('## Resources') < md.index('## Runs')
    # The run set for the model zoo carries the measured resources of the
    # repository config (the toy low-bit config is outside configs/).
    entry = local_run_set(result['entries'], 'compare.sh --resources CONFIG', date='2026-12-01')
    seg = 'configs/resnet/' + SEG_NAME
    assert entry['resources'] == {seg: {'peak_train_mib': 1050.0, 'train_step_mib': 320.0,
                                        'latency_ms': 55.2}}
    (checked, ) = mz.validate_local({'runs': [entry]}, mz.list_configs())
    assert checked['resources'] == entry['resources']
    # Nothing measured: no resource view unless asked for.
    for d in ('fp/seed0', 'fp/seed1'):
        (runs_dir / d / 'peak_memory.json').unlink()
    build_leaderboard([str(runs_dir)], str(tmp_path / 'lb2'), cost_fn=fake_low_bit_cost)
    assert '## Resources' not in (tmp_path / 'lb2' / 'leaderboard.md').read_text()
    build_leaderboard([str(runs_dir)], str(tmp_path / 'lb3'), cost_fn=fake_low_bit_cost,
                      resources=True)
    md = (tmp_path / 'lb3' / 'leaderboard.md').read_text()
    row = next(cells(ln) for ln in md.split('## Resources')[1].splitlines()
               if ln.startswith('| resnet'))
    assert row[-3:] == ['not measured', 'not measured', '55.2']
