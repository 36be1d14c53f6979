"""The computed tables of docs/designs/ are current, and the marker machinery
that writes them (.dev_scripts/backbone_costs.py) works."""
import importlib.util
import os.path as osp

import pytest
from conftest import ROOT

from mmext.analysis.backbone_costs import BackboneCost, backbone_cost


def _dev_script(name):
    # .dev_scripts/ is repository maintenance, not a package: load by path.
    spec = importlib.util.spec_from_file_location(f'dev_{name}',
                                                  osp.join(ROOT, '.dev_scripts', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bc = _dev_script('backbone_costs')
check_docs, marker_configs, render_table = bc.check_docs, bc.marker_configs, bc.render_table
update_docs, update_markdown = bc.update_docs, bc.update_markdown
DOCS = bc.doc_files(ROOT)
BEGIN = '<!-- backbone-costs:begin'
END = '<!-- backbone-costs:end -->'


def fake_cost(path):
    """Distinct, path-dependent numbers without building a model."""
    n = len(path)
    ops = ('aten::add_', 'aten::im2col') if 'b' in path else ('aten::add_', )
    return BackboneCost(config=path, backbone=f'Fake-{n}', params=n * 1_000_000 + 4_999,
                        flops=n * 10**8, out_channels=2048, uncounted_ops=ops)


def test_docs_exist_with_tables():
    names = {osp.basename(p) for p in DOCS}
    assert {'README.md', 'resnet_host.md', 'attention_plugins.md', 'selective_kernel.md',
            'dynamic_convolutions.md', 'sda.md', 'res2net.md'} <= names
    tables = [t for p in DOCS for t in marker_configs(open(p, encoding='utf-8').read())]
    assert len(tables) >= 10


@pytest.mark.parametrize('doc', DOCS, ids=[osp.basename(p) for p in DOCS])
def test_marker_configs_exist(doc):
    with open(doc, encoding='utf-8') as f:
        for configs in marker_configs(f.read()):
            for config in configs:
                assert not osp.isabs(config), config
                assert osp.isfile(osp.join(ROOT, config)), f'{osp.basename(doc)}: {config}'


def test_update_markdown_rewrites_only_between_markers(tmp_path):
    text = (
        '# Title\n\nbefore\n\n'
        f'{BEGIN} configs/a.py configs/bb.py -->\n'
        'stale table\n| 1 | 2 |\n'
        f'{END}\n\nbetween\n\n'
        f'{BEGIN} configs/cc.py -->\n'
        f'{END}\n\nafter\n')
    md = tmp_path / 'design.md'
    md.write_text(text)

    # Stale (and an empty) table: the check reports the file with a diff.
    stale = check_docs([str(md)], root=str(tmp_path), cost_fn=fake_cost)
    assert list(stale) == [str(md)]
    assert '-stale table' in stale[str(md)] and '+| `configs/bb.py` |' in stale[str(md)]

    assert update_docs([str(md)], root=str(tmp_path), cost_fn=fake_cost) == [str(md)]
    new = md.read_text()
    a, bb, cc = (fake_cost(p) for p in ('configs/a.py', 'configs/bb.py', 'configs/cc.py'))
    expected = (
        '# Title\n\nbefore\n\n'
        f'{BEGIN} configs/a.py configs/bb.py -->\n'
        f'{render_table([a, bb])}'
        f'{END}\n\nbetween\n\n'
        f'{BEGIN} configs/cc.py -->\n'
        f'{render_table([cc])}'
        f'{END}\n\nafter\n')
    assert new == expected
    # Rows in marker order, fixed formatting: M and G with two decimals, the
    # ImageNet classifier (2048 * 1000 + 1000) added, differences to row 1.
    rows = [[c.strip() for c in line.strip('|').split('|')] for line in new.splitlines()
            if line.startswith('| `')]
    assert rows[0] == ['`configs/a.py`', 'Fake-12', '12.00', '14.05', '1.20', 'reference',
                       'reference']
    assert rows[1] == ['`configs/bb.py`', 'Fake-13', '13.00', '15.05', '1.30', '+1.00', '+0.10']
    assert "`configs/bb.py` also `aten::im2col`" in new

    # Idempotent: a fresh computation matches, nothing to rewrite.
    assert check_docs([str(md)], root=str(tmp_path), cost_fn=fake_cost) == {}
    assert update_docs([str(md)], root=str(tmp_path), cost_fn=fake_cost) == []
    assert update_markdown(new, fake_cost) == new


@pytest.mark.parametrize('bad', [
    f'{BEGIN} configs/a.py -->\nno end\n',
    f'{END}\n',
    f'{BEGIN} -->\n{END}\n',
])
def test_malformed_markers_are_refused(bad):
    with pytest.raises(ValueError):
        update_markdown(bad, fake_cost)


def test_baseline_cost_is_resnet50():
    # Anchors the real counter: torchvision's ResNet-50 has 25,557,032
    # parameters with its classifier, the 25.56M every paper quotes.
    cost = backbone_cost('configs/resnet/retinanet_r50_fpn_1x_coco.py', root=ROOT)
    assert cost.imagenet_params == 25_557_032
    assert cost.out_channels == 2048
    assert 4.0e9 < cost.flops < 4.2e9, cost.flops


def test_committed_tables_are_current():
    stale = check_docs(DOCS, root=ROOT)
    assert not stale, ('stale backbone-costs tables; run '
                       '`python .dev_scripts/backbone_costs.py --update-docs`\n'
                       + '\n'.join(stale.values()))
