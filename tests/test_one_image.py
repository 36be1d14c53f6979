"""Training with one image per device (issue 12, section 1).

A BatchNorm over a globally pooled descriptor sees one value per channel at
one image per device. Every unit follows the host's norm (SyncBN pools the
batch across devices), its norm can be set on its own (GN, None), and a
training step at batch 1 either runs by a documented rule or stops with
mmext's one-line error, never torch's raw ``ValueError``.
"""
import glob
import os.path as osp
import warnings
from functools import partial
from importlib import import_module

import pytest
import torch
import torch.nn as nn
from conftest import CONFIGS
from design_checks import check_one_image_per_device, run_or_one_value_error, unit_norms
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import DefaultScope

import mmext.models.layers.unit_norm as unit_norm
from mmext.__main__ import main as mmext_main
from mmext.models.backbones import SDAResNet
from mmext.models.layers import DCDC, ODConv, SKConv, TAdaConv
from mmext.models.plugins import CBAM
from mmext.registry import MODELS
from mmext.utils.config import load_config, register_library
from mmext.utils.errors import MMExtError

X9 = torch.randn(1, 32, 9, 9)
SYNC = dict(type='SyncBN', requires_grad=True)


# The rule on a 9x9 map, with every host_norm_args, runs for every registered
# component in test_component_contract.py; these are the design-specific cases.
# (build, batch-1 input, norm arguments, raises at that input[, norm options])
UNITS = {
    # SK's own fuse-norm argument (its host fills norm_cfg).
    'SKConv': (partial(SKConv, 32, 32, 3, padding=1), X9, ('attn_norm_cfg',), True),
    # Per-position norms: only a 1x1 output map at batch 1 is one value.
    'DCDC': (partial(DCDC, 32, 32, 3, padding=1), X9[..., :1, :1], ('norm_cfg',), True),
    # One channel on a 1x1 map: only no norm has more than one value.
    'CBAM': (partial(CBAM, 32), X9[..., :1, :1], ('norm_cfg',), True, (None,)),
    'SDAResNet': (partial(SDAResNet, depth=18, base_channels=16, norm_eval=False),
                  torch.randn(1, 3, 64, 64), ('attn_norm_cfg',), True),
}


@pytest.mark.parametrize('name', list(UNITS))
def test_unit_at_one_image(name):
    build, x, args, raises, *options = UNITS[name]
    torch.manual_seed(0)
    check_one_image_per_device(build, x, args, raises, *options)


def test_error_names_the_module_and_explain_knows_it(capsys):
    # The reproduction, in a host: the message names the unit's place.
    model = MODELS.build(dict(type='mmext.ResNet', depth=18, base_channels=16, norm_eval=False,
                              block_conv_cfg=dict(type='mmext.ODConv', kernel_num=1)))
    with pytest.raises(MMExtError) as info:
        model.train()(torch.randn(1, 3, 32, 32))
    msg = str(info.value)
    assert msg.startswith("ODConv 'layer1.0.conv1.attention': BatchNorm2d (attn_norm_cfg) "), msg
    # norm_eval, the fix the message names last, makes the same step run.
    model.norm_eval = True
    assert run_or_one_value_error(model, torch.randn(1, 3, 32, 32)) is None

    raw = ('ValueError: Expected more than 1 value per channel when training, '
           'got input size torch.Size([1, 16, 1, 1])')
    for text in (msg, raw):
        assert mmext_main(['explain', text]) == 0
        out = capsys.readouterr().out
        assert 'one value per channel' in out and 'SyncBN' in out and 'norm_eval' in out, out


def test_explain_names_the_unit_and_its_argument(capsys):
    msg = str(_one_value_error(SKConv(32, 32, 3, padding=1)))
    assert mmext_main(['explain', msg]) == 0
    out = capsys.readouterr().out
    assert out.startswith('the BatchNorm of SKConv') and 'attn_norm_cfg=dict(' in out, out


def _one_value_error(module):
    with pytest.raises(MMExtError) as info:
        module.train()(X9)
    return info.value


def test_syncbn_across_devices_does_not_raise(monkeypatch):
    """SyncBN in a group of several ranks pools the batch: no error (the
    group is faked, SyncBN's CPU forward itself needs a single process)."""
    norm = nn.SyncBatchNorm(16).train()
    z = torch.randn(1, 16, 1, 1)
    with pytest.raises(MMExtError):
        unit_norm.check_norm_input(norm, z, norm, 'attn_norm_cfg')
    monkeypatch.setattr(unit_norm.dist, 'is_initialized', lambda: True)
    monkeypatch.setattr(unit_norm.dist, 'get_world_size', lambda group=None: 2)
    monkeypatch.setattr(unit_norm.dist, 'group', type('G', (), {'WORLD': None}))
    unit_norm.check_norm_input(norm, z, norm, 'attn_norm_cfg')
    # A plain BN does not pool across devices, whatever the world size.
    with pytest.raises(MMExtError):
        unit_norm.check_norm_input(nn.BatchNorm2d(16).train(), z, norm, 'attn_norm_cfg')


def test_tadaconv_video_clip_trains_at_batch_one():
    """The documented rule: T > 1 frames give the route's BN N * T values."""
    conv = TAdaConv(32, 32, 3, padding=1).train()
    out = conv(torch.randn(1, 32, 2, 9, 9))
    out.sum().backward()
    assert out.shape == (1, 32, 2, 9, 9)
    with pytest.raises(MMExtError, match='TAdaConv'):
        conv(torch.randn(1, 32, 1, 9, 9))


def test_groupnorm_that_cannot_normalise_a_descriptor_is_refused():
    with pytest.raises(MMExtError, match=r"attn_norm_cfg=dict\(type='GN', num_groups=1\)"):
        ODConv(32, 32, 3, attn_norm_cfg=dict(type='GN', num_groups=16))  # 16 channels
    with pytest.raises(MMExtError, match='SKConv'):
        SKConv(32, 32, 3, attn_norm_cfg=dict(type='GN', num_groups=5))


def test_hosts_pass_their_norm_to_every_unit():
    """The mmext hosts give their norm_cfg to every argument a unit declares
    in host_norm_args, unless the cfg sets it; SDA's squeeze follows too."""
    model = MODELS.build(dict(
        type='mmext.ResNet', depth=18, base_channels=16, norm_cfg=SYNC,
        block_conv_cfg=dict(type='mmext.ODConv', kernel_num=1),
        plugins=[dict(cfg=dict(type='mmext.CBAM', ratio=4), position='after_conv2'),
                 dict(cfg=dict(type='mmext.SE', ratio=4), position='after_conv2')]))
    norms = unit_norms(model)
    assert 'layer1.0.conv1.attention.bn' in norms and 'layer4.1.cbam.spatial_conv.bn' in norms
    assert all(isinstance(n, nn.SyncBatchNorm) for n in norms.values()), norms
    assert model.layer1[0].cbam.spatial_conv.norm.momentum == 0.01  # CBAM's official momentum
    # dcn slot (SK, TAdaConv, DCDC); an explicit argument wins over the host.
    for unit, key in (('SKConv', 'fc.bn'), ('TAdaConv', 'route.bn'), ('DCDC', 'lsa_reduce.bn')):
        model = MODELS.build(dict(type='mmext.ResNet', depth=18, base_channels=16,
                                  norm_cfg=SYNC, dcn=dict(type=f'mmext.{unit}'),
                                  stage_with_dcn=(False, False, False, True)))
        assert isinstance(model.layer4[0].conv1.get_submodule(key), nn.SyncBatchNorm), unit
    model = MODELS.build(dict(type='mmext.ResNet', depth=18, base_channels=16, norm_cfg=SYNC,
                              block_conv_cfg=dict(type='mmext.ODConv', attn_norm_cfg=None)))
    assert isinstance(model.layer1[0].conv1.attention.bn, nn.Identity)
    sda = SDAResNet(depth=18, base_channels=16, norm_cfg=SYNC)
    assert isinstance(sda.layer1.fc[1], nn.SyncBatchNorm)
    sda = SDAResNet(depth=18, base_channels=16, norm_cfg=SYNC,
                    attn_norm_cfg=dict(type='GN', num_groups=1))
    assert isinstance(sda.layer1.fc[1], nn.GroupNorm)
    # Built alone, a unit keeps the official BN.
    assert type(ODConv(32, 32, 3).attention.bn) is nn.BatchNorm2d


# Every shipped config, its backbone deduplicated (the same dict is built once).
ALL_CONFIGS = sorted(p for p in glob.glob(osp.join(CONFIGS, '*', '*.py'))
                     if osp.basename(osp.dirname(p)) != '_base_')
# The reproduction: these stop at batch 1 (BN statistics train).
MUST_RAISE = ('odconv/upernet_', 'sk/upernet_', 'tadaconv/upernet_', 'sda/upernet_')


def _backbone_key(cfg):
    cfg = {k: v for k, v in cfg.items() if k not in ('init_cfg', 'pretrained')}
    return repr(sorted(cfg.items()))


@pytest.fixture(scope='module')
def one_image_outcomes():
    """{config: None (ran) or the mmext message} for a batch-1 train-mode
    forward of every config's backbone at 64x64 (stride 32 leaves a 2x2 map,
    so only pooled descriptors see one value), as the tools run it on one CPU
    process (SyncBN reverted to BN by mmengine), plus the unit norms that were
    not SyncBN in SyncBN configs. ~35 s of CPU, mostly loading 134 configs."""
    seen, outcomes, not_sync, checked = {}, {}, {}, {}
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    # Tiny forwards: one thread avoids oversubscribing the shared CI cores
    # (measured 4x faster there than the default thread count).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _sweep(seen, outcomes, not_sync, checked, x)
    finally:
        torch.set_num_threads(threads)
    return outcomes, not_sync, checked


def _sweep(seen, outcomes, not_sync, checked, x):
    for path in ALL_CONFIGS:
        rel = osp.relpath(path, CONFIGS)
        with warnings.catch_warnings():
            # mmdet and mmseg configs in one process: default-scope warnings.
            warnings.simplefilter('ignore')
            cfg = load_config(path)
            lib = register_library(cfg)
            backbone = cfg.model.backbone.to_dict()
            key = _backbone_key(backbone)
            if key in seen:
                outcomes[rel] = outcomes[seen[key]]
                continue
            seen[key] = rel
            torch.manual_seed(0)
            with DefaultScope.overwrite_default_scope(lib):
                model = import_module(f'{lib}.registry').MODELS.build(backbone)
        if 'SyncBN' in repr(backbone.get('norm_cfg')):
            norms = unit_norms(model)
            checked[rel] = len(norms)
            # A design's own norm that reduces its statistics across ranks
            # itself (CMod's energy norm) says so with sync=True.
            bad = [n for n, m in norms.items()
                   if not (isinstance(m, nn.SyncBatchNorm) or getattr(m, 'sync', False) is True)]
            if bad:
                not_sync[rel] = bad
        model = revert_sync_batchnorm(model)
        assert not any(isinstance(m, nn.SyncBatchNorm) for m in model.modules()), rel
        outcomes[rel] = run_or_one_value_error(model, x, backward=False)


def test_every_config_backbone_runs_or_stops_with_the_mmext_error(one_image_outcomes):
    outcomes = one_image_outcomes[0]
    assert len(outcomes) == len(ALL_CONFIGS)
    raised = sorted(c for c, msg in outcomes.items() if msg is not None)
    for prefix in MUST_RAISE:
        hits = [c for c in outcomes if c.startswith(prefix)]
        assert hits and all(c in raised for c in hits), (prefix, raised)
    # The message names the unit and where it sits.
    assert outcomes['odconv/upernet_r18-c128-odconv1x_4xb4-160k_ade20k-512x512.py'].startswith(
        "ODConv 'layer1.0.conv1.attention': ")
    assert outcomes['sda/upernet_r50-sda_4xb4-160k_ade20k-512x512.py'].startswith(
        "SDAResNet stage 'layer1': ")


def test_syncbn_configs_build_every_unit_norm_as_syncbn(one_image_outcomes):
    _, not_sync, checked = one_image_outcomes
    assert not not_sync, not_sync
    # Not vacuous: the units of these configs have norms (mmext hosts pass
    # SyncBN; the configs on mmseg's own hosts set it in the unit's cfg).
    for rel in ('odconv/upernet_r18-c128-odconv1x_4xb4-160k_ade20k-512x512.py',
                'sk/upernet_r18-c128-sk_4xb4-160k_ade20k-512x512.py',
                'tadaconv/upernet_r50-tada_4xb4-160k_ade20k-512x512.py',
                'cbam/upernet_r50-cbam_4xb4-160k_ade20k-512x512.py',
                'dcdc/upernet_r18-c128-dcdc_4xb4-160k_ade20k-512x512.py',
                'sda/upernet_r86-sda_4xb4-160k_ade20k-512x512.py'):
        assert checked.get(rel), (rel, checked.get(rel))


def test_tools_guard_every_batchnorm_of_the_model(capsys):
    """Outside the units (e.g. the 1x1 pyramid branch of mmseg's UPerHead),
    the tools' guard names the norm and the config key instead of torch's
    ValueError; batch 2, eval mode and an unguarded model behave as before."""
    model = nn.Module()
    model.decode_head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(8, 8, 1),
                                      nn.BatchNorm2d(8))
    handles = unit_norm.guard_batch_norms(model)
    x = torch.randn(1, 8, 5, 7)
    with pytest.raises(MMExtError) as info:
        model.decode_head.train()(x)
    msg = str(info.value)
    assert msg.startswith("'decode_head.2': BatchNorm2d (norm_cfg) sees one value per channel")
    assert "model.decode_head.norm_cfg=dict(type='GN'" in msg and '\n' not in msg, msg
    assert model.decode_head(torch.randn(2, 8, 5, 7)).shape == (2, 8, 1, 1)
    assert model.decode_head.eval()(x).shape == (1, 8, 1, 1)
    assert mmext_main(['explain', msg]) == 0
    assert "the BatchNorm 'decode_head.2'" in capsys.readouterr().out
    for handle in handles:
        handle.remove()
    with pytest.raises(ValueError, match='Expected more than 1 value per channel'):
        model.decode_head.train()(x)
