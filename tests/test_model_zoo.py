"""docs/model_zoo.md: generated from the configs and the metadata files
(.dev_scripts/model_zoo.py)."""
import importlib.util
import os.path as osp
import textwrap

import pytest
import yaml
from conftest import ROOT, run_tool

from mmext.analysis.backbone_costs import BackboneCost
from mmext.utils.errors import MMExtError

TOOL = '.dev_scripts/model_zoo.py'
# .dev_scripts/ is repository maintenance, not a package: load by path.
_spec = importlib.util.spec_from_file_location('dev_model_zoo', osp.join(ROOT, TOOL))
mz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mz)


def cells(line):
    """The cells of a Markdown table row, stripped of their padding."""
    return [c.strip() for c in line.strip().strip('|').split(' | ')]


@pytest.mark.slow
def test_committed_page_is_current():
    """The page the tool generates now equals the committed one byte for byte
    (every backbone is counted: about two minutes on two cores)."""
    res = run_tool(TOOL, '--check', env={'OMP_NUM_THREADS': '1'})
    assert res.returncode == 0, (
        f'docs/model_zoo.md or a local-results block is stale; run `python {TOOL}`\n'
        + res.stdout[-20000:] + res.stderr[-3000:])
    assert 'is current' in res.stdout


def test_metadata_points_to_existing_configs():
    configs = mz.list_configs()
    assert configs and all(p.startswith('configs/') and '/_base_/' not in p for p in configs)
    assert all(osp.isfile(osp.join(ROOT, p)) for p in configs)
    published, local = mz.load_metadata(configs)  # raises on unknown configs
    assert published and local
    for config, entries in published.items():
        assert osp.isfile(osp.join(ROOT, config)), config
        assert all(e['source'] for e in entries), config
    for run in local:
        assert all(run[k] for k in mz.LOCAL_RUN_KEYS)
        assert all(osp.isfile(osp.join(ROOT, c)) for c in run['results'])


def test_pipelines_and_cost_keys():
    assert mz.pipeline_of({'type': 'RetinaNet'}) == 'RetinaNet'
    assert mz.pipeline_of({'type': 'mmdet.MaskRCNN'}) == 'Mask R-CNN'
    assert mz.pipeline_of({'type': 'EncoderDecoder', 'decode_head': {'type': 'UPerHead'}}) \
        == 'UperNet'
    assert mz.pipeline_of({'type': 'FasterRCNN'}) == 'other'
    a = mz.cost_key('mmdet', {'type': 'ResNet', 'depth': 50, 'frozen_stages': 1,
                              'init_cfg': {'type': 'Pretrained', 'checkpoint': 'x'}})
    b = mz.cost_key('mmdet', {'depth': 50, 'type': 'ResNet', 'norm_eval': True})
    assert a == b
    assert a != mz.cost_key('mmseg', {'type': 'ResNet', 'depth': 50})
    assert a != mz.cost_key('mmdet', {'type': 'ResNet', 'depth': 101})


def _entry(**kw):
    entry = {'metric': 'COCO box AP (RetinaNet 1x)', 'value': '36.5', 'source': 'a paper'}
    entry.update(kw)
    return {k: v for k, v in entry.items() if v is not None}


def test_published_entry_without_source_is_rejected():
    configs = ['configs/a/retinanet_x.py']
    ok = mz.validate_published({configs[0]: [_entry()]}, configs)
    assert ok[configs[0]][0]['source'] == 'a paper'
    for bad in (_entry(source=None), _entry(source='  '), _entry(value=None)):
        with pytest.raises(MMExtError, match='needs its metric, value and source'):
            mz.validate_published({configs[0]: [bad]}, configs)
    with pytest.raises(MMExtError, match='not a config of the repository'):
        mz.validate_published({'configs/a/missing.py': [_entry()]}, configs)
    with pytest.raises(MMExtError, match='unknown keys'):
        mz.validate_published({configs[0]: [_entry(note='x')]}, configs)


def test_unverified_published_entry_needs_its_reason():
    configs = ['configs/a/retinanet_x.py']
    ok = mz.validate_published({configs[0]: [_entry(), _entry(unverified=' not in Table 9 ')]},
                               configs)[configs[0]]
    assert [e['unverified'] for e in ok] == ['', 'not in Table 9']
    for bad in (True, '  ', None, 1):
        with pytest.raises(MMExtError, match='unverified must say what was checked'):
            mz.validate_published({configs[0]: [_entry(unverified='x') | {'unverified': bad}]},
                                  configs)


def test_local_run_needs_its_provenance():
    configs = ['configs/a/upernet_x.py']
    run = {'date': '2026-01-01', 'seed': 0, 'machine': 'cpu', 'commit': 'abc',
           'command': 'python tools/train.py CONFIG', 'results': {configs[0]: {'mIoU': 1.5}}}
    assert mz.validate_local({'runs': [run]}, configs)[0]['seed'] == '0'
    for key in mz.LOCAL_RUN_KEYS:
        with pytest.raises(MMExtError, match=f'no {key}'):
            mz.validate_local({'runs': [{k: v for k, v in run.items() if k != key}]}, configs)
    with pytest.raises(MMExtError, match='not a number'):
        mz.validate_local({'runs': [dict(run, results={configs[0]: {'mIoU': 'high'}})]}, configs)


def _fake_repo(tmp_path):
    """Three tiny configs in two designs, a _base_ that must be skipped, and
    both metadata files."""
    base = tmp_path / 'configs' / '_base_'
    base.mkdir(parents=True)
    (base / 'model.py').write_text("default_scope = 'mmdet'\n"
                                   "model = dict(type='RetinaNet', backbone=dict(type='X'))\n")
    for design, name, text in [
        ('alpha', 'retinanet_a.py', "_base_ = '../_base_/model.py'\n"
         "model = dict(backbone=dict(type='ResNet', depth=18,\n"
         "                           init_cfg=dict(type='Pretrained')))\n"),
        ('alpha', 'mask-rcnn_a.py', "default_scope = 'mmdet'\n"
         "model = dict(type='MaskRCNN', backbone=dict("
         "type='ResNet', depth=18))\n"),
        ('beta', 'upernet_b.py', "default_scope = 'mmseg'\n"
         "model = dict(type='EncoderDecoder', backbone=dict("
         "type='mmext.Foo', arch='t'), decode_head=dict(type='UPerHead'))\n"),
    ]:
        (tmp_path / 'configs' / design).mkdir(exist_ok=True)
        (tmp_path / 'configs' / design / name).write_text(text)
    (tmp_path / 'docs').mkdir()
    (tmp_path / 'docs' / 'published.yml').write_text(textwrap.dedent("""\
        configs/alpha/retinanet_a.py:
        - metric: COCO box AP (RetinaNet 1x)
          value: '31.7'
          source: Some et al., a paper | with a pipe
        - metric: ImageNet top-1
          value: 70.0%
          source: Other et al.
        configs/beta/upernet_b.py:
        - metric: ADE20K mIoU
          value: '40.10'
          source: Other et al.
        - metric: ADE20K mIoU (multi-scale)
          value: '41.0'
          source: Other et al.
          unverified: not in the paper's Table 3
        """))
    (tmp_path / 'docs' / 'local_results.yml').write_text(textwrap.dedent("""\
        runs:
        - date: 2026-01-02
          seed: 3
          machine: a laptop
          commit: deadbee
          command: python tools/train.py CONFIG
          results:
            configs/beta/upernet_b.py: {mIoU: 12.3456, mAcc: 20}
          resources:
            configs/beta/upernet_b.py:
              {peak_train_mib: 1234.5, train_step_mib: 300, latency_ms: 88.25}
        """))
    return tmp_path


def test_render_on_fake_metadata(tmp_path):
    root = str(_fake_repo(tmp_path))
    calls = []

    def fake_cost(path):
        calls.append(path)
        depth = 18 if 'alpha' in path else 1
        return BackboneCost(config=path, backbone=f'Fake-{depth}', params=depth * 1_000_000,
                            flops=depth * 2_000_000_000, out_channels=512)

    page = mz.generate(root=root, cost_fn=fake_cost)
    # The _base_ is not a row; the two alpha configs share one backbone (init_cfg aside).
    assert calls == ['configs/alpha/mask-rcnn_a.py', 'configs/beta/upernet_b.py']
    assert page == mz.generate(root=root, cost_fn=fake_cost)  # deterministic
    lines = page.splitlines()
    # Groups: design, then pipeline in the fixed order.
    order = [ln for ln in lines if ln.startswith('## ') or ln.startswith('### ')]
    assert order == ['## alpha', '### alpha: RetinaNet', '### alpha: Mask R-CNN', '## beta',
                     '### beta: UperNet', '## Resource view', '### Resource view: RetinaNet',
                     '### Resource view: Mask R-CNN', '### Resource view: UperNet',
                     '## Published sources', '## Unverified published figures',
                     '## Local runs']
    row_a = next(ln for ln in lines if ln.startswith('| [retinanet_a.py]'))
    assert cells(row_a) == [
        '[retinanet_a.py](../configs/alpha/retinanet_a.py)', 'Fake-18', '18.00', '18.51',
        '36.00', 'COCO box AP (RetinaNet 1x): 31.7 [P1](#published-sources)'
        '<br>ImageNet top-1: 70.0% [P2](#published-sources)', '-']
    row_b = next(ln for ln in lines if ln.startswith('| [upernet_b.py]'))
    assert cells(row_b)[-2:] == [
        'ADE20K mIoU: 40.10 [P2](#published-sources)<br>ADE20K mIoU (multi-scale): 41.0 '
        '[P2](#published-sources) **unverified** [U1](#unverified-published-figures)',
        'mIoU 12.35, mAcc 20 [L1](#local-runs)']
    # The resource view: the run set's measurements and the same runs' metrics.
    view = page.split('\n## Resource view\n')[1].split('## Published sources')[0].splitlines()
    res_b = next(ln for ln in view if ln.startswith('| [upernet_b.py]'))
    assert cells(res_b)[1:] == ['beta', '1.00', '2.00', '-', '1234.50', '300', '88.25',
                                'mIoU 12.35, mAcc 20 [L1](#local-runs)']
    res_a = next(ln for ln in view if ln.startswith('| [retinanet_a.py]'))
    assert cells(res_a)[5:] == ['not measured'] * 4
    assert ("- U1: `configs/beta/upernet_b.py`, ADE20K mIoU (multi-scale): 41.0. "
            "not in the paper's Table 3") in lines
    assert row_a.count('unverified') == 0
    assert '- P1: Some et al., a paper \\| with a pipe' in lines
    assert ('- L1: 2026-01-02, commit `deadbee`, seed 3, machine: a laptop; 1 configs; '
            'command: `python tools/train.py CONFIG`') in lines
    assert 'computed' in page and 'published' in page and 'local' in page

    # A stale page gives a diff; the current one none.
    md = tmp_path / 'docs' / 'model_zoo.md'
    mz.write_page(page, str(md))
    assert mz.diff_page(page, str(md), root) == ''
    md.write_text(page.replace(' 18.00 ', ' 18.01 '))
    diff = mz.diff_page(page, str(md), root)
    assert diff.startswith('--- a/docs/model_zoo.md') and '-| [retinanet_a.py]' in diff


def test_unknown_config_in_metadata_fails_generation(tmp_path):
    root = _fake_repo(tmp_path)
    with open(root / 'docs' / 'published.yml', 'a') as f:
        f.write("configs/alpha/gone.py:\n- {metric: m, value: '1', source: s}\n")
    with pytest.raises(MMExtError, match='gone.py'):
        mz.generate(root=str(root), cost_fn=lambda p: None)


def test_local_resources_are_checked():
    configs = ['configs/a/upernet_x.py', 'configs/a/retinanet_y.py']
    run = {'date': '2026-01-01', 'seed': 0, 'machine': 'cpu', 'commit': 'abc',
           'command': 'compare.sh --resources CONFIG', 'results': {configs[0]: {'mIoU': 1.5}},
           'resources': {configs[0]: {'peak_train_mib': 900.5, 'latency_ms': 12}}}
    assert mz.validate_local({'runs': [run]}, configs)[0]['resources'] == run['resources']
    for resources, match in [({configs[1]: {'latency_ms': 1.0}}, 'has no results'),
                             ({configs[0]: {'memory': 1.0}}, "unknown 'memory'"),
                             ({configs[0]: {'latency_ms': 'fast'}}, 'not a non-negative'),
                             ({configs[0]: {'latency_ms': -1}}, 'not a non-negative')]:
        with pytest.raises(MMExtError, match=match):
            mz.validate_local({'runs': [dict(run, resources=resources)]}, configs)


def test_committed_resources_are_in_the_resource_view():
    """The committed measurement set (docs/local_results.yml, a run set with
    resources) fills the resource view of its configs: the newest set per
    config, its L number, its metrics."""
    configs = mz.list_configs()
    _, local = mz.load_metadata(configs)
    measured = {c: (i, v) for i, run in enumerate(local)
                for c, v in run['resources'].items()}
    assert measured, 'docs/local_results.yml has no run set with resources'
    zoo = [mz.read_config(c) for c in sorted(measured)]
    rows = mz.build_rows(zoo, {}, local, cost_fn=lambda p: BackboneCost(
        p, 'X', 1_000_000, 1_000_000_000, 8, effective_bytes=4_000_000))
    view = mz.render_page(rows, local=local).split('\n## Resource view\n')[1]
    for config, (i, values) in measured.items():
        line = next(ln for ln in view.splitlines() if f'](../{config})' in ln)
        assert f'[L{i + 1}](#local-runs)' in line
        for key in ('peak_train_mib', 'latency_ms'):
            assert f' {mz._number(values[key])} ' in line, (config, key)


def test_local_results_blocks(tmp_path):
    """A docs page shows a run set of the local file through a generated
    block; everything outside the markers is kept, bad markers are errors."""
    root = _fake_repo(tmp_path)
    page = root / 'docs' / 'results.md'
    page.write_text('# Results\n\nbefore\n\n<!-- local-results:begin L1 -->\nold table\n'
                    '<!-- local-results:end -->\n\nafter\n')
    (root / 'docs' / 'other.md').write_text('no block here\n')
    pages = mz.local_pages(str(root))
    assert list(pages) == [str(page)]
    text = pages[str(page)]
    assert text.startswith('# Results\n\nbefore\n\n<!-- local-results:begin L1 -->\nLocal (L1), ')
    assert text.endswith('<!-- local-results:end -->\n\nafter\n')
    assert 'old table' not in text
    assert 'commit `deadbee`, seed 3, machine: a laptop' in text
    rows = [cells(line) for line in text.splitlines() if line.startswith('|')]
    assert rows[0] == ['design', 'config', 'mIoU (local)', 'mAcc (local)']
    assert rows[2] == ['beta', '`configs/beta/upernet_b.py`', '12.35', '20']
    # Regenerating is idempotent.
    assert mz.update_local_blocks(text, mz.load_metadata(
        mz.list_configs(str(root)), str(root))[1]) == text
    page.write_text('<!-- local-results:begin L2 -->\n<!-- local-results:end -->\n')
    with pytest.raises(MMExtError, match='L2'):
        mz.local_pages(str(root))
    page.write_text('<!-- local-results:begin L1 -->\nno end\n')
    with pytest.raises(MMExtError, match='unbalanced'):
        mz.local_pages(str(root))


def test_append_local_run_keeps_the_file(tmp_path):
    root = _fake_repo(tmp_path)
    path = root / 'docs' / 'local_results.yml'
    path.write_text('# comments stay\n' + path.read_text())
    entry = {'date': '2026-11-24', 'seed': '0 1', 'machine': 'ci', 'commit': 'abc1234',
             'command': 'python tools/analysis_tools/compare.py CONFIG', 'note': '',
             'results': {'configs/alpha/retinanet_a.py': {'box AP': 1.25}}}
    mz.append_local_run(entry, root=str(root))
    text = path.read_text()
    assert text.startswith('# comments stay\nruns:\n')
    runs = mz.load_metadata(mz.list_configs(str(root)), str(root))[1]
    assert [r['commit'] for r in runs] == ['deadbee', 'abc1234']
    assert runs[1]['results'] == entry['results'] and runs[1]['seed'] == '0 1'
    # A new file starts the list; a result for an unknown config is refused
    # before anything is written.
    fresh = tmp_path / 'fresh.yml'
    mz.append_local_run(entry, str(fresh), str(root))
    assert mz.validate_local(yaml.safe_load(fresh.read_text()), mz.list_configs(str(root)))
    bad = dict(entry, results={'configs/nope.py': {'mIoU': 1.0}})
    with pytest.raises(MMExtError, match='not a config'):
        mz.append_local_run(bad, root=str(root))
    assert path.read_text() == text


def test_low_bit_columns_in_generated_tables():
    """A table with a low-bit backbone (BackboneCost's low-bit fields) gains
    size, full-precision FLOPs and BOPs, in the model zoo and in the
    docs' cost tables (.dev_scripts/backbone_costs.py); other tables keep
    their columns."""
    fp = BackboneCost('configs/alpha/retinanet_fp.py', 'ResNet-18', 11_176_512,
                      1_819_066_368, 512, effective_bytes=44_706_048)
    low = BackboneCost('configs/alpha/retinanet_xnor.py', 'ResNet-18', 11_176_512,
                       1_819_066_368, 512, low_bit_layers=16, low_bit_macs=1_705_574_400,
                       bops=1_705_574_400, effective_bytes=2_137_344)
    other = BackboneCost('configs/beta/upernet_b.py', 'ResNet-50', 23_508_032,
                         4_111_514_624, 2048, effective_bytes=94_032_128)

    def row(cost, design, pipeline):
        zc = mz.ZooConfig(cost.config, design, pipeline, cost.config)
        return mz.build_rows([zc], {}, [], cost_fn=lambda p: cost)[0]

    page = mz.render_page([row(fp, 'alpha', 'RetinaNet'), row(low, 'alpha', 'RetinaNet'),
                           row(other, 'beta', 'UperNet')])
    page, resource_view = page.split('## Resource view\n')
    lines = page.splitlines()
    headers = [cells(ln) for ln in lines if ln.startswith('| config')]
    assert headers[0][4:8] == ['FLOPs (G, 1x3x224x224, computed)', 'size (MB, computed)',
                               'full-precision FLOPs (G, 1x3x224x224, computed)',
                               'BOPs (G, 1x3x224x224, computed)']
    assert headers[1][4:6] == ['FLOPs (G, 1x3x224x224, computed)', 'published']
    rows = {cells(ln)[0].split(']')[0][1:]: cells(ln) for ln in lines
            if ln.startswith('| [')}
    assert rows['retinanet_fp.py'][4:8] == ['1.82', '44.71', '1.82', '0.00']
    assert rows['retinanet_xnor.py'][4:8] == ['1.82', '2.14', '0.11', '1.71']
    assert len(rows['upernet_b.py']) == 7
    # The resource view: the same computed figures, nothing measured.
    view = resource_view.split('## Published sources')[0].splitlines()
    assert [cells(ln)[4:] for ln in view if ln.startswith('| config')] == [
        ['size (MB, computed)', 'full-precision FLOPs (G, 1x3x224x224, computed)',
         'BOPs (G, 1x3x224x224, computed)', 'peak train memory (MiB, local)',
         'train step (MiB, local)', 'latency (ms/img, local)', 'accuracy (local)'],
        ['size (MB, computed)', 'peak train memory (MiB, local)', 'train step (MiB, local)',
         'latency (ms/img, local)', 'accuracy (local)']]
    rows = {cells(ln)[0].split(']')[0][1:]: cells(ln) for ln in view if ln.startswith('| [')}
    assert rows['retinanet_xnor.py'][1:] == ['alpha', '11.18', '1.82', '2.14', '0.11', '1.71'] \
        + ['not measured'] * 4
    assert rows['upernet_b.py'][2:5] == ['23.51', '4.11', '94.03']

    bc_spec = importlib.util.spec_from_file_location(
        'dev_backbone_costs', osp.join(ROOT, '.dev_scripts', 'backbone_costs.py'))
    bc = importlib.util.module_from_spec(bc_spec)
    bc_spec.loader.exec_module(bc)
    table = bc.render_table([fp, low])
    table_rows = [cells(ln) for ln in table.splitlines() if ln.startswith('| ')]
    assert table_rows[0][7:] == ['size (MB)', 'full-precision FLOPs (G, 1x3x224x224)',
                                 'BOPs (G, 1x3x224x224)']
    assert table_rows[3][7:] == ['2.14', '0.11', '1.71']
    assert 'BOPs = MACs x weight_bits x activation_bits' in table
    plain = bc.render_table([fp, other])
    assert 'BOPs' not in plain and 'size (MB)' not in plain
