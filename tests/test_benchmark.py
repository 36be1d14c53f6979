"""Speed benchmark: report structure, references, machine probe and the CLI.

Timings are printed by the tool, never asserted here.
"""
import math
import os.path as osp

import pytest
import torch
from conftest import CONFIGS, run_tool
from torch import nn

from mmext.analysis import benchmark as bm
from mmext.utils.errors import MMExtError

TOOL = osp.join('tools', 'analysis_tools', 'benchmark.py')
R18 = osp.join(CONFIGS, 'resnet', 'retinanet_r18_fpn_1x_coco.py')


def _tiny(width):
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(width, width, 3, stride=2, padding=1))


def _table_rows(text):
    return [[c.strip() for c in line.strip().strip('|').split('|')]
            for line in text.splitlines() if line.startswith('|')]


def test_ratio_report_on_two_tiny_models():
    subjects = [bm.Subject.from_module('a', _tiny(8)), bm.Subject.from_module('b', _tiny(4))]
    machine = bm.measure_machine('cpu', gemm_size=64, conv_shape=(1, 4, 8, 8, 4), repeats=1)
    result = bm.benchmark_subjects(subjects, shape=(16, 16), batch=2, repeats=2, warmup=1,
                                   train=True, device='cpu', machine=machine, progress=False)
    assert [m.name for m in result.models] == ['a', 'b']
    for m in result.models:
        assert m.infer.n == 2 and m.train.n == 2
        assert m.infer.min <= m.infer.q1 <= m.infer.median <= m.infer.q3 <= m.infer.max
        assert m.flops > 0 and m.train_path
    # a: 3*8*9*256 + 8*8*9*64 MACs; b: 3*4*9*256 + 4*4*9*64
    assert result.models[0].flops == 3 * 8 * 9 * 256 + 8 * 8 * 9 * 64
    assert result.ratio('params') == pytest.approx(
        sum(p.numel() for p in _tiny(8).parameters()) /
        sum(p.numel() for p in _tiny(4).parameters()))
    for what in ('infer', 'train', 'flops'):
        r = result.ratio(what)
        assert r > 0 and math.isfinite(r)

    text = bm.render(result)
    rows = _table_rows(text)
    header, body = rows[0], rows[2:]
    assert header == list(bm.COLUMNS)
    assert [r[0] for r in body] == ['`a`', '`b`', 'A/B']
    assert all(len(r) == len(header) for r in rows)
    ratio = float(body[2][header.index('infer ms/img (median)')])
    assert ratio > 0 and math.isfinite(ratio)
    assert 'Machine limit' in text and 'GFLOP/s' in text
    # the fraction of the GEMM figure is printed for each model
    assert all(r[header.index('% GEMM')] != '-' for r in body[:2])


def test_single_model_has_no_ratio_row():
    result = bm.benchmark_subjects([bm.Subject.from_module('a', _tiny(4))], shape=(8, 8),
                                   repeats=1, warmup=0, device='cpu', machine=False,
                                   progress=False)
    assert result.ratio() is None and result.models[0].train is None
    body = _table_rows(bm.render(result))[2:]
    assert [r[0] for r in body] == ['`a`']


def test_parse_reference(tmp_path):
    assert bm.parse_reference('timm:resnet50') == bm.Reference('timm', 'resnet50')
    assert bm.parse_reference('resnet18') == bm.Reference('timm', 'resnet18')
    assert bm.parse_reference('timm:resnet18').label == 'timm:resnet18'
    assert bm.parse_reference(R18) == bm.Reference('config', R18)
    rel = osp.join('configs', 'resnet', 'retinanet_r18_fpn_1x_coco.py')
    assert bm.parse_reference(rel, root=osp.dirname(CONFIGS)).kind == 'config'
    with pytest.raises(MMExtError, match='not found'):
        bm.parse_reference(str(tmp_path / 'missing.py'))
    # An installed package's config by scope, as the configs' own _base_ names it.
    regnet = 'mmdet::regnet/retinanet_regnetx-3.2GF_fpn_1x_coco.py'
    assert bm.parse_reference(regnet, root=osp.dirname(CONFIGS)) == bm.Reference('config', regnet)
    with pytest.raises(MMExtError, match='cannot find config mmdet::regnet/no_such.py'):
        bm.parse_reference('mmdet::regnet/no_such.py')
    with pytest.raises(MMExtError, match='timm has no model'):
        bm.parse_reference('timm:no_such_net_xyz')
    with pytest.raises(MMExtError, match='neither a config file nor a timm model'):
        bm.parse_reference('no_such_net_xyz')


def test_mmpretrain_reference():
    ref = bm.parse_reference('mmpretrain:VAN:tiny')
    assert ref == bm.Reference('mmpretrain', 'VAN:tiny') and ref.installed
    assert ref.label == 'mmpretrain:VAN:tiny'
    feats = bm.build_subject(ref).model(torch.zeros(1, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [(1, 32, 16, 16), (1, 64, 8, 8), (1, 160, 4, 4),
                                              (1, 256, 2, 2)]
    with pytest.raises(MMExtError, match='mmpretrain:TYPE:ARCH'):
        bm.parse_reference('mmpretrain:VAN')
    for bad in ('mmpretrain:VAN:tiny;out_indices', 'mmpretrain:VAN:tiny;out_indices=(3,'):
        with pytest.raises(MMExtError, match='is not key=<Python literal>'):
            bm.parse_reference(bad)
    # A spec's own arguments override the stage-output defaults (no table of
    # mmpretrain types: a design declares what its reference needs).
    ref = bm.parse_reference('mmpretrain:VAN:tiny;out_indices=(1, 3)')
    feats = bm.build_subject(ref).model(torch.zeros(1, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [(1, 64, 8, 8), (1, 256, 2, 2)]


def test_listed_references():
    assert bm.listed_references(dict(type='mmext.VAN', arch='b2')) == ('mmpretrain:VAN:base', )
    assert bm.listed_references(dict(type='mmext.MViTv2', arch='tiny'))[0] == \
        'timm:mvitv2_tiny'
    assert bm.listed_references(dict(type='mmdet.PyramidVisionTransformerV2', embed_dims=32,
                                     num_layers=[2, 2, 2, 2])) == ('timm:pvt_v2_b0', )
    # resolved in the config's library: mmdet's scope, no prefix
    assert bm.listed_references(dict(type='PyramidVisionTransformerV2', embed_dims=32,
                                     num_layers=[2, 2, 2, 2]), scope='mmdet') == \
        ('timm:pvt_v2_b0', )
    assert bm.listed_references(dict(type='mmext.VAN', arch='base')) == ('mmpretrain:VAN:base', )
    assert bm.listed_references(dict(type='mmext.VAN', arch='b5')) == ()
    assert bm.listed_references(dict(type='mmext.VAN', arch=dict(embed_dims=[8] * 4))) == ()
    assert bm.listed_references(dict(type='ResNet', depth=50)) == ()
    # every declared spec parses
    declared = bm.declared_references()
    assert {'VAN', 'HorNet', 'MViTv2', 'mmdet.PyramidVisionTransformerV2'} <= set(declared)
    for archs in declared.values():
        for specs in archs.values():
            assert all(bm.parse_reference(spec).kind in bm.KINDS for spec in specs)


def test_references_of_a_new_design_are_found(monkeypatch):
    """A test-only registered backbone and a test-only upstream design (for
    mmdet's ResNet) declare references; the lookup by config type finds
    them, by ``arch`` or by the declared ``reference_arch_key``."""
    from mmext.models.backbones import pvt
    from mmext.models.upstream import UpstreamDesign
    from mmext.registry import MODELS

    class ToyNet(nn.Module):
        reference_implementations = {'small': ('timm:resnet18', )}

        def __init__(self, arch='small'):
            super().__init__()

    monkeypatch.setitem(MODELS.module_dict, 'ToyNet', ToyNet)
    monkeypatch.setattr(pvt, 'TOY_UPSTREAM', UpstreamDesign(
        'ToyUp', 'mmdet.ResNet', reference_implementations={50: ('timm:resnet50', )},
        reference_arch_key=lambda cfg: cfg['depth']), raising=False)
    assert bm.listed_references(dict(type='mmext.ToyNet')) == ('timm:resnet18', )
    assert bm.listed_references(dict(type='ResNet', depth=50), scope='mmdet') == \
        ('timm:resnet50', )
    assert bm.listed_references(dict(type='mmext.ResNet', depth=50)) == ()  # mmext's class
    assert {'ToyNet', 'mmdet.ResNet'} <= set(bm.declared_references())


def test_reference_without_its_package_is_skipped(monkeypatch, capsys):
    monkeypatch.setitem(bm.KINDS, 'mmpretrain', 'mmext_no_such_package')
    result = bm.run_benchmark(R18, 'mmpretrain:VAN:tiny', shape=(32, 32), repeats=1, warmup=0,
                              backbone_only=True, device='cpu', machine=False, progress=False)
    assert [m.name for m in result.models] == [R18] and result.ratio() is None
    assert any('mmpretrain:VAN:tiny skipped: mmext_no_such_package is not installed' in n
               for n in result.notes)
    assert 'skipped' in capsys.readouterr().err


def test_timm_reference_builds_a_backbone():
    s = bm.build_subject(bm.Reference('timm', 'resnet18'))
    feats = s.model.eval()(torch.zeros(1, 3, 32, 32))
    assert isinstance(feats, list) and feats[-1].shape[1] == 512


def test_machine_probes_positive():
    assert bm.gemm_gflops('cpu', size=128, repeats=1) > 0
    assert bm.conv_gflops('cpu', shape=(1, 8, 16, 16, 8), repeats=1) > 0


def test_spread():
    s = bm.Spread.of([4.0, 1.0, 3.0, 2.0])
    assert (s.median, s.min, s.max, s.n) == (2.5, 1.0, 4.0, 4)
    assert s.q1 == pytest.approx(1.75) and s.q3 == pytest.approx(3.25)


def test_cli_small_config():
    proc = run_tool(TOOL, R18, '--shape', '64', '64', '--repeats', '2', '--warmup', '1',
                    '--train', '--gemm-size', '256', '--device', 'cpu')
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _table_rows(proc.stdout)
    assert rows[0] == list(bm.COLUMNS)
    assert rows[2][0] == f'`{R18}`' and rows[2][1] == 'RetinaNet'
    assert 'RetinaNet loss' in proc.stdout and 'Machine limit' in proc.stdout
    assert '2/2' in proc.stderr or '4/4' in proc.stderr or 'elapsed' in proc.stderr


def test_cli_compare_with_timm_and_errors():
    proc = run_tool(TOOL, R18, '--compare', 'timm:resnet18', '--shape', '32', '32',
                    '--repeats', '2', '--warmup', '1', '--no-machine', '--no-progress',
                    '--device', 'cpu')
    assert proc.returncode == 0, proc.stderr[-3000:]
    body = _table_rows(proc.stdout)[2:]
    assert [r[0] for r in body] == [f'`{R18}`', '`timm:resnet18`', 'A/B']
    assert body[0][1] == 'backbone ResNet'
    proc = run_tool(TOOL, R18, '--compare', 'no_such_net_xyz', '--no-machine')
    assert proc.returncode == 1 and 'benchmark: error:' in proc.stderr
    # R18's backbone declares no reference implementation
    proc = run_tool(TOOL, R18, '--compare', 'reference', '--no-machine')
    assert proc.returncode == 1 and 'no reference implementation is declared' in proc.stderr
