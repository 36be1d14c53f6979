"""G-Ghost RegNet: parameter counts of every official variant, MACs and stage
outputs of 3.2GF, the G-Ghost stage's widths and its computation against a
reference written from the specification, the merge norm at one image per
device, and the official checkpoint layout (the shared backbone contract runs
in test_backbone_contract.py)."""
import functools
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from backbone_checks import check_official_checkpoint, count_params, same_names_as
from design_checks import randomize_norms
from mmdet.models.layers import ResLayer
from torch.utils.flop_counter import FlopCounterMode

from mmext.models.backbones.g_ghost_regnet import GGhostRegNet, GGhostStage
from mmext.utils.errors import MMExtError

# Parameters of the official g_ghost_regnetx_* models with their 1000-class fc,
# measured on the official file (catalog B2).
OFFICIAL_PARAMS = {
    '200mf': 1_825_440, '400mf': 2_884_456, '600mf': 4_029_776, '800mf': 5_248_328,
    '1.6gf': 7_109_660, '3.2gf': 10_511_000, '4.0gf': 15_726_268, '6.4gf': 17_993_748,
    '8.0gf': 24_586_928, '12gf': 30_627_208, '16gf': 32_381_704, '32gf': 62_815_448,
}
TINY = GGhostRegNet.backbone_examples[0]


def fc_params(model):
    return model.out_channels[-1] * 1000 + 1000


@pytest.fixture(scope='module')
def regnetx_032():
    return GGhostRegNet().eval()


@pytest.mark.parametrize('arch', sorted(OFFICIAL_PARAMS))
def test_parameter_counts_of_the_official_variants(arch):
    model = GGhostRegNet(arch=arch)
    assert count_params(model) + fc_params(model) == OFFICIAL_PARAMS[arch]


def test_regnetx_032_counts_macs_and_outputs(regnetx_032):
    model = regnetx_032
    assert count_params(model) == 9_502_000
    assert count_params(model) + fc_params(model) == 10_511_000
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        outs = model(torch.randn(1, 3, 224, 224))
    macs = counter.get_total_flops() / 2 + 1008 * 1000  # + the fc, as measured
    assert abs(macs / 1.802e9 - 1) < 0.01, macs
    assert [tuple(o.shape[1:]) for o in outs] == [(96, 56, 56), (192, 28, 28), (432, 14, 14),
                                                 (1008, 7, 7)]


def test_stage_kinds_and_widths(regnetx_032):
    model = regnetx_032
    assert isinstance(model.layer1, ResLayer) and isinstance(model.layer4, ResLayer)
    for name, raw, cheap, merge_in, raw_groups in (('layer2', 72, 120, 480, 2),
                                                   ('layer3', 216, 216, 3240, 6)):
        stage = getattr(model, name)
        assert isinstance(stage, GGhostStage)
        assert (stage.raw_planes, stage.cheap_planes) == (raw, cheap)
        assert stage.merge[1].in_channels == merge_in
        assert stage.cheap[0].in_channels == cheap
        assert all(b.conv2.groups == raw_groups for b in stage.layers)
    assert len(model.layer2.layers) == 6 - 2 and len(model.layer3.layers) == 15 - 2
    assert [b.conv2.groups for b in model.layer4] == [21, 21]
    # 200MF: layer2 has one block (plain), layer4 seven (G-Ghost).
    small = GGhostRegNet(arch='200mf')
    assert isinstance(small.layer2, ResLayer) and isinstance(small.layer4, GGhostStage)


def test_aliases_and_arch_errors():
    assert GGhostRegNet(arch='g_ghost_regnetx_080').out_channels == (80, 240, 720, 1920)
    with pytest.raises(ValueError, match='3.2gf'):
        GGhostRegNet(arch='3.3gf')
    with pytest.raises(ValueError, match='layer3'):
        GGhostRegNet(arch=dict(depths=[1, 1, 2, 1], widths=[8, 16, 24, 32], group_width=8))
    with pytest.raises(ValueError, match='raw and'):  # int(0.75 * 1) = 0: no raw channels
        GGhostRegNet(arch=dict(depths=[1, 1, 3, 1], widths=[8, 16, 24, 32], group_width=1))



def _bn(m, t):
    return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0., m.eps)


def _x_block(blk, x, group_width, stride):
    """RegNetX X block (catalog B2): 1x1 -> BN -> ReLU -> 3x3 (stride, w / min(w, gw)
    groups) -> BN -> ReLU -> 1x1 -> BN, + shortcut (1x1 stride s + BN if any), ReLU."""
    w = blk.conv1.weight.shape[0]
    y = F.relu(_bn(blk.bn1, F.conv2d(x, blk.conv1.weight)))
    y = F.relu(_bn(blk.bn2, F.conv2d(y, blk.conv2.weight, stride=stride, padding=1,
                                     groups=w // min(w, group_width))))
    y = _bn(blk.bn3, F.conv2d(y, blk.conv3.weight))
    ds = blk.downsample
    shortcut = x if ds is None else _bn(ds[1], F.conv2d(x, ds[0].weight, stride=stride))
    return F.relu(y + shortcut)


def _g_ghost_stage(stage, x, planes, group_width, blocks, cheap_ratio=0.5):
    """The G-Ghost stage of catalog B2, from its widths: base, n - 2 raw blocks of
    group width int(0.75 gw) on x0[:, :raw], merge = GAP -> 1x1 -> BN -> ReLU -> 1x1 -> BN
    on cat[x0, e_1 ..], ghost = ReLU(BN(1x1(x0[:, raw:])) + merge), end on cat[e, ghost]."""
    raw_gw = int(0.75 * group_width)
    raw = int(planes * (1 - cheap_ratio) / raw_gw) * raw_gw
    x0 = _x_block(stage.base, x, group_width, 2)
    feats, e = [x0], x0[:, :raw]
    for blk in stage.layers:
        e = _x_block(blk, e, raw_gw, 1)
        feats.append(e)
    assert len(feats) == blocks - 1
    mg = stage.merge
    d = torch.cat(feats, 1).mean((2, 3), keepdim=True)
    m = _bn(mg[5], F.conv2d(F.relu(_bn(mg[2], F.conv2d(d, mg[1].weight))), mg[4].weight))
    ghost = F.relu(_bn(stage.cheap[1], F.conv2d(x0[:, raw:], stage.cheap[0].weight)) + m)
    return _x_block(stage.end, torch.cat([e, ghost], 1), group_width, 1)


def _reference(model, x, depths, widths, group_width):
    x = F.relu(_bn(model.norm1, F.conv2d(x, model.conv1.weight, stride=2, padding=1)))
    outs = []
    for i, (n, w) in enumerate(zip(depths, widths)):
        stage = getattr(model, f'layer{i + 1}')
        if i == 2 or (i in (1, 3) and n > 2):
            x = _g_ghost_stage(stage, x, w, group_width, n)
        else:
            for j, blk in enumerate(stage):
                x = _x_block(blk, x, group_width, 2 if j == 0 else 1)
        outs.append(x)
    return outs


@pytest.mark.parametrize('arch', [
    # uneven split in layer4: raw int(32 / 6) * 6 = 30, cheap 34
    dict(depths=[1, 2, 4, 3], widths=[16, 24, 48, 64], group_width=8), '3.2gf'])
def test_forward_equals_the_specified_computation(arch, regnetx_032):
    model = regnetx_032 if arch == '3.2gf' else GGhostRegNet(arch=arch).eval()
    settings = GGhostRegNet.resolve_arch(arch)
    randomize_norms(model)
    x = torch.randn(2, 3, 45, 37)
    with torch.no_grad():
        outs = model(x)
        expected = _reference(model, x, settings['depths'], settings['widths'],
                              settings['group_width'])
    for out, exp in zip(outs, expected):
        assert out.is_contiguous()  # NCHW, though the stages run channels-last on CPU
        torch.testing.assert_close(out, exp, rtol=1e-4, atol=1e-5)


def test_large_odd_input():
    model = GGhostRegNet(**TINY).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 511, 673))
    assert [tuple(o.shape[2:]) for o in outs] == [(math.ceil(511 / s), math.ceil(673 / s))
                                                  for s in (4, 8, 16, 32)]


def test_merge_norm_follows_norm_cfg_and_one_image_per_device():
    sync = GGhostRegNet(**TINY, norm_cfg=dict(type='SyncBN'))
    assert isinstance(sync.layer3.merge[2], nn.SyncBatchNorm)
    assert isinstance(sync.layer3.merge[5], nn.SyncBatchNorm)
    x = torch.randn(1, 3, 35, 51)
    with pytest.raises(MMExtError, match=r"GGhostRegNet stage 'layer3'.*merge_norm_cfg"):
        GGhostRegNet(**TINY).train()(x)
    # The documented alternative for one image per device trains.
    gn = GGhostRegNet(**TINY, merge_norm_cfg=dict(type='GN', num_groups=1)).train()
    assert isinstance(gn.layer3.merge[2], nn.GroupNorm)
    sum(o.sum() for o in gn(x)).backward()


# Official keys (catalog B2, and the module names of the official file): stem conv1 / bn1,
# X blocks conv{1,2,3} / bn{1,2,3} / downsample.{0,1}, G-Ghost stages base / layers.{j} /
# end / merge.{1,2,4,5} / cheap.{0,1}; mmdet's blocks name their BNs as the official ones.
_BN = r'\.(weight|bias|running_mean|running_var|num_batches_tracked)$'
_BLOCK = rf'(conv[123]\.weight$|bn[123]{_BN}|downsample\.0\.weight$|downsample\.1{_BN})'
to_official = same_names_as(
    rf'^(conv1\.weight$|bn1{_BN}|layer[14]\.\d+\.{_BLOCK}'
    rf'|layer[23]\.(base|end|layers\.\d+)\.{_BLOCK}|layer[23]\.merge\.[14]\.weight$'
    rf'|layer[23]\.merge\.[25]{_BN}|layer[23]\.cheap\.0\.weight$|layer[23]\.cheap\.1{_BN})')


def test_official_checkpoint_loads(tmp_path):
    check_official_checkpoint(
        functools.partial(GGhostRegNet, arch='3.2gf'), to_official, tmp_path, 'GGhostRegNet',
        '3.2gf', classifier={'fc.weight': torch.zeros(1000, 1008), 'fc.bias': torch.zeros(1000)})
