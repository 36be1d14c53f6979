"""Gradient-matrix pruning (mmext/analysis/gradient_pruning.py, the
``mid_channels`` option of the ResNet hosts, tools/analysis_tools/prune.py):
the redundancy estimate on duplicated filters, the bound of the plan, the
pruned model against the masked original, the export in stock mmdet and one
run of the tool."""
import json
import math
import os.path as osp

import pytest
import torch
from conftest import PIPELINES, ROOT, smoke_cfg
from torch import nn

from mmext.analysis import gradient_pruning as gp
from mmext.models.backbones.resnet import ResNet, ResNetV1c
from mmext.utils.errors import MMExtError


def _loss(backbone):
    def loss_fn(x):
        return sum((out**2).mean() for out in backbone(x))
    return loss_fn


def _batches(n, shape=(2, 3, 32, 32), seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=gen) for _ in range(n)]


@pytest.mark.parametrize('k', [2, 4])
def test_duplicated_filters_give_rho_k_minus_1_over_k(k):
    """layer2.0.conv1 (16 filters) as 16 / k distinct filters, each repeated
    k times: the filters, their BN channels and the input columns of conv2
    that read them are copies, so the copies' outputs and the loss gradients
    reaching them are equal, hence equal gradient rows: rank 16 / k."""
    torch.manual_seed(0)
    backbone = ResNet(18, base_channels=8, stem_channels=8)
    block = backbone.layer2[0]
    unique = 16 // k
    src = torch.arange(16) % unique
    with torch.no_grad():
        block.conv1.weight.copy_(block.conv1.weight[src])
        block.bn1.weight.copy_(torch.rand(16)[src] + 0.5)
        block.bn1.bias.copy_(torch.randn(16)[src] * 0.1)
        block.conv2.weight.copy_(block.conv2.weight[:, src])
        # zero_init_residual leaves norm2 at 0: no gradient would reach conv1.
        block.bn2.weight.fill_(1.0)
    backbone.train()
    layers = gp.prunable_convs(backbone)
    grams, n, positions = gp.accumulate_grams(layers, _batches(3), _loss(backbone))
    assert n == 3
    plans = gp.plan_pruning(layers, grams, positions=positions)
    plan = next(p for p in plans if p.name == 'layer2.0.conv1')
    assert plan.positions == 3 * 2 * 4 * 4 and not plan.data_limited
    assert plan.rank == unique
    assert plan.rho == pytest.approx((k - 1) / k)
    assert plan.max_prune == 16 - unique == plan.n_prune
    # one filter of each group of copies is kept (the first: ties to the lower index)
    assert plan.keep == tuple(range(unique))
    # the other layers have distinct random filters: nothing below the threshold
    # at the default tau in this tiny network with plenty of positions
    other = next(p for p in plans if p.name == 'layer2.1.conv1')
    assert other.rank == 16


def _fake_layers(widths, stages):
    return [gp.PrunableConv(f'layer{s + 1}.{i}.conv1', s, i, 0, nn.Conv2d(4, c, 1),
                            nn.BatchNorm2d(c), nn.Conv2d(c, 4, 1))
            for i, (c, s) in enumerate(zip(widths, stages))]


def _gram_of_rank(c_out, rank, seed):
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(c_out, rank, generator=gen, dtype=torch.float64) @ \
        torch.randn(rank, 50, generator=gen, dtype=torch.float64)
    return g @ g.T


@pytest.mark.parametrize('ratio', [1.0, 0.5, 0.3, 0.0, [1.0, 0.25]])
def test_pruning_never_exceeds_the_estimate(ratio):
    widths, ranks, stages = [16, 24, 8, 32, 12], [5, 24, 1, 17, 12], [0, 0, 1, 1, 1]
    layers = _fake_layers(widths, stages)
    grams = [_gram_of_rank(c, r, i) for i, (c, r) in enumerate(zip(widths, ranks))]
    plans = gp.plan_pruning(layers, grams, threshold=1e-6, ratio=ratio)
    ratios = gp.stage_ratios(ratio, 2)
    for plan, c, r, s in zip(plans, widths, ranks, stages):
        assert plan.rank == r and plan.max_prune == math.floor(plan.rho * c) == c - r
        assert plan.n_prune <= plan.max_prune
        assert plan.n_prune == math.floor(ratios[s] * (c - r))
        assert len(plan.keep) == c - plan.n_prune >= 1
        assert list(plan.keep) == sorted(set(plan.keep))


def test_zero_gradient_and_data_limited_layers_are_left_alone():
    layers = _fake_layers([8, 8], [0, 0])
    grams = [torch.zeros(8, 8, dtype=torch.float64), _gram_of_rank(8, 2, 0)]
    plans = gp.plan_pruning(layers, grams, positions=[100, 8])
    assert plans[0].rank is None and plans[0].n_prune == 0
    assert plans[1].rank == 2 and plans[1].data_limited and plans[1].n_prune == 0


def test_selection_keeps_the_most_independent_rows():
    # rows 0 and 2 are parallel (2 is longer), 1 and 3 are independent and small
    rows = torch.tensor([[1.0, 0, 0], [0, 0.1, 0], [2.0, 0, 0], [0, 0, 0.5]],
                        dtype=torch.float64)
    assert gp.select_filters(rows @ rows.T, 3) == (1, 2, 3)
    assert gp.select_filters(rows @ rows.T, 1) == (2, )
    with pytest.raises(ValueError):
        gp.select_filters(rows @ rows.T, 0)


def test_numerical_rank_threshold():
    sigma = torch.tensor([10.0, 1.0, 0.2, 0.05, 0.0])
    # sigma_i > tau * sigma_max, strictly
    assert gp.numerical_rank(sigma, 0.01) == 3
    assert gp.numerical_rank(sigma, 0.001) == 4
    assert gp.numerical_rank(sigma, 0.03) == 2
    assert gp.numerical_rank(torch.zeros(3), 0.01) == 0
    with pytest.raises(MMExtError, match='threshold'):
        gp.plan_pruning(_fake_layers([4], [0]), [torch.eye(4)], threshold=1.5)
    with pytest.raises(MMExtError, match='ratio'):
        gp.plan_pruning(_fake_layers([4], [0]), [torch.eye(4)], ratio=[0.5, 0.5])


@pytest.mark.parametrize('cls,kwargs', [
    (ResNet, dict(depth=50, base_channels=8, stem_channels=16)),
    (ResNetV1c, dict(depth=18, base_channels=8, stem_channels=16)),
])
def test_pruned_model_equals_the_masked_original(cls, kwargs):
    torch.manual_seed(0)
    original = cls(**kwargs)
    # non-trivial norms: zero_init_residual zeroes the last norm of every block
    for m in original.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.normal_(m.bias, std=0.1)
            m.running_mean.normal_(std=0.1)
            m.running_var.uniform_(0.5, 1.5)
    original.eval()
    layers = gp.prunable_convs(original)
    gen = torch.Generator().manual_seed(1)
    plans = []
    for layer in layers:
        c = layer.out_channels
        n_keep = int(torch.randint(1, c + 1, (1, ), generator=gen))
        keep = tuple(sorted(torch.randperm(c, generator=gen)[:n_keep].tolist()))
        plans.append(gp.LayerPlan(layer.name, layer.stage, layer.block, layer.index, c,
                                  n_prune=c - n_keep, keep=keep))
    state = gp.prune_state_dict(original.state_dict(), layers, plans, prefix='')
    pruned = cls(**kwargs, mid_channels=gp.mid_channels(plans, original))
    pruned.load_state_dict(state, strict=True)
    pruned.eval()
    assert sum(p.numel() for p in pruned.parameters()) < \
        sum(p.numel() for p in original.parameters())
    x = torch.randn(2, 3, 40, 56)
    handles = gp.mask_pruned(layers, plans)
    with torch.no_grad():
        masked = original(x)
        for h in handles:
            h.remove()
        unmasked = original(x)
        out = pruned(x)
    for a, b, c in zip(out, masked, unmasked):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(b, c, atol=1e-3)  # the mask changes the output


def test_mid_channels_errors_are_one_line():
    bad = [([None] * 3, 'one entry per stage'),
           ([[[2, 2]], None, None, None], 'one entry per block'),
           ([[[2, 0], None, None], None, None, None], r'mid_channels\[0\]\[0\]'),
           ([[[2], None, None], None, None, None], r'mid_channels\[0\]\[0\]')]
    for value, match in bad:
        with pytest.raises(ValueError, match=match) as info:
            ResNet(50, base_channels=8, stem_channels=8, mid_channels=value)
        assert '\n' not in str(info.value)
    se = [dict(cfg=dict(type='mmext.SE', ratio=4), position='after_conv2')]
    with pytest.raises(ValueError, match='plugins after conv2'):
        ResNet(50, base_channels=8, stem_channels=8, plugins=se,
               mid_channels=[[[4, 4], None, None], None, None, None])
    from mmext.models.backbones.resnet import ResNeXt
    with pytest.raises(ValueError, match='XBottleneck'):
        ResNeXt(groups=2, base_width=4, depth=50, base_channels=8, stem_channels=8,
                mid_channels=[[[4, 4], None, None], None, None, None])
    # None entries build the host unchanged
    assert ResNet(18, mid_channels=[None, [None, None], None, None]).layer2[0].conv1.out_channels \
        == 128


def test_only_the_resnet_family_is_pruned():
    assert gp.backbone_type(dict(type='ResNet', depth=50), 'mmdet') == 'mmext.ResNet'
    assert gp.backbone_type(dict(type='mmseg.ResNetV1c'), 'mmseg') == 'mmext.ResNetV1c'
    for cfg, scope in [(dict(type='mmext.VAN'), 'mmdet'), (dict(type='ResNet'), 'mmseg'),
                       (dict(type='ResNeXt'), 'mmdet'),
                       (dict(type='ResNet', dcn=dict(type='DCNv2')), 'mmdet')]:
        with pytest.raises(MMExtError) as info:
            gp.backbone_type(cfg, scope)
        assert '\n' not in str(info.value)


# The neck and head at 32 channels (as tests/test_design_configs.py shrinks
# them): the pruned backbone is what is under test, at full R-18 width.
SMALL_HEAD = {'model.neck.out_channels': 32, 'model.bbox_head.in_channels': 32,
              'model.bbox_head.feat_channels': 32, 'test_dataloader.dataset.indices': 2}


@pytest.fixture(scope='module')
def pruned_run(embedded_root, tmp_path_factory):
    """A tiny RetinaNet R-18 trained one iteration on the smoke data, then
    the tool (in this process, as ``python tools/analysis_tools/prune.py``
    runs it): 2 calibration batches, a 1-iteration fine-tune, the report."""
    import contextlib
    import io
    import runpy
    tmp = tmp_path_factory.mktemp('prune')
    cfg = smoke_cfg('retinanet', embedded_root, tmp / 'train', **SMALL_HEAD)
    model = gp.build_model(cfg)
    gp.train_iterations(cfg, model, 1)
    ckpt = str(tmp / 'r18.pth')
    gp.save_checkpoint(model.state_dict(), ckpt)
    out = tmp / 'out'
    tool = runpy.run_path(osp.join(ROOT, 'tools', 'analysis_tools', 'prune.py'))
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert tool['main']([
            PIPELINES['retinanet'], ckpt, '--embedded', 'smoke', '--data-root', embedded_root,
            '--out', str(out), '--calib-batches', '2', '--finetune-iters', '1',
            '--threshold', '0.05', '--shape', '64', '80', '--repeats', '1', '--warmup', '0',
            '--cfg-options', *(f'{k}={v}' for k, v in SMALL_HEAD.items())]) == 0
    return out, ckpt, stdout.getvalue()


def test_tool_prunes_within_the_estimate_and_reports(pruned_run):
    out, _, stdout = pruned_run
    report = json.loads((out / 'report.json').read_text())
    plans = report['plans']
    assert len(plans) == 8  # conv1 of the 8 BasicBlocks of R-18
    assert any(p['n_prune'] for p in plans)
    for p in plans:
        assert p['n_prune'] <= p['max_prune']
        if p['rho'] is not None:
            assert p['max_prune'] == math.floor(p['rho'] * p['out_channels'] + 1e-9)
        assert len(p['keep']) == p['out_channels'] - p['n_prune']
    rows = report['rows']
    assert [r['model'] for r in rows] == ['original', 'pruned', 'pruned + 1 it fine-tune']
    assert rows[1]['params'] < rows[0]['params'] and rows[1]['flops'] < rows[0]['flops']
    assert all(r['metric'] == 'coco/bbox_mAP' and math.isfinite(r['value']) for r in rows)
    assert all(r['latency_ms'] > 0 and r['backbone_latency_ms'] > 0 for r in rows)
    md = (out / 'report.md').read_text()
    assert '## Before / after' in md and '## Left alone (residual-coupled)' in md
    assert 'layer4: 512 channels of the residual stream' in md
    assert stdout.endswith(md)
    assert (out / 'pruned_finetuned.pth').is_file()


def test_exported_detector_builds_and_loads_in_stock_mmdet(pruned_run):
    """The issue's done-criterion: mmdet's registry (scope mmdet) builds the
    exported config, whose custom_imports bring mmext, and the exported
    checkpoint loads strictly into it; its backbone tensors are smaller."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmengine.runner import load_checkpoint
    out, ckpt, _ = pruned_run
    cfg = Config.fromfile(str(out / 'pruned_config.py'))
    assert cfg.custom_imports['imports'] == ['mmext']
    assert cfg.model.backbone.type == 'mmext.ResNet'
    assert cfg.load_from == str(out / 'pruned.pth')
    register_all_modules(init_default_scope=True)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    load_checkpoint(model, str(out / 'pruned.pth'), map_location='cpu', strict=True)
    original = torch.load(ckpt, map_location='cpu')['state_dict']
    pruned = model.state_dict()
    assert pruned.keys() == original.keys()
    smaller = [k for k in pruned if pruned[k].shape != original[k].shape]
    assert smaller and all(k.startswith('backbone.layer') for k in smaller)
    assert all(k.rsplit('.', 1)[-1] in ('weight', 'bias', 'running_mean', 'running_var')
               for k in smaller)


def test_example_configs_give_the_tool_its_defaults():
    from mmext.utils.config import load_config
    # one of the three (they share the section; loading a config takes seconds)
    cfg = load_config(osp.join(ROOT, 'configs', 'gradient_pruning',
                               'retinanet_r50-prune_fpn_1x_coco.py'))
    assert gp.resolve_settings(cfg) == dict(threshold=0.01, calib_batches=16, ratio=1.0,
                                            finetune_iters=0)
    # the command line wins; the backbone is one the tool prunes
    settings = gp.resolve_settings(cfg, ratio=[0.5], calib_batches=2)
    assert settings['ratio'] == 0.5 and settings['calib_batches'] == 2
    assert gp.backbone_type(cfg.model.backbone, 'mmdet') == 'mmext.ResNet'
    cfg.pruning = dict(tau=0.1)
    with pytest.raises(MMExtError, match='unknown key'):
        gp.resolve_settings(cfg)
