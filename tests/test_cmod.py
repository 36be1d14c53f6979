"""CMod stem (Leterme et al., arXiv 2212.00394): the dual-tree complex wavelet
packets against their two-stage definition, the modulus' phase blindness, the
exact 4-px shift equivariance, the energy norm, the ResNet hosts.

Shapes at odd sizes, gradients, bf16 and the one-image contract of the stem
alone are the shared component checks (``tests/test_component_contract.py``).
"""
import math

import pytest
import torch
import torch.distributed.nn.functional as dist_fn
import torch.nn as nn
import torch.nn.functional as F
from design_checks import randomize, randomize_norms

from mmext.models.layers.cmod import (OFFICIAL_MIX_GROUPS, OFFICIAL_MIX_IN, OFFICIAL_MIX_OUT,
                                      OFFICIAL_PACKETS, BatchNormOnGaborModulus2d, CModStem,
                                      complex_kernels, packet_index, qshift_filters)
from mmext.registry import MODELS
from mmext.utils.errors import MMExtError

STEM = dict(type='mmext.CModStem', free_channels=40)


def small_stem(**kwargs):
    return randomize_norms(randomize(CModStem(3, 64, **kwargs)))


def test_qshift_filters_are_an_orthonormal_quadrature_pair():
    ha, hb, ga, gb = qshift_filters()
    torch.testing.assert_close(hb, ha.flip(0))
    for h, g in ((ha, ga), (hb, gb)):
        for k in range(5):
            # Orthonormal under even shifts, g orthogonal to every even shift of h.
            assert abs(float(h[:10 - 2 * k] @ h[2 * k:]) - (k == 0)) < 1e-12
            assert abs(float(g[:10 - 2 * k] @ g[2 * k:]) - (k == 0)) < 1e-12
            assert abs(float(h[:10 - 2 * k] @ g[2 * k:])) < 1e-12
            assert abs(float(g[:10 - 2 * k] @ h[2 * k:])) < 1e-12
        # Low-pass / zero-mean to the stored coefficients' precision.
        assert abs(float(h.sum()) - math.sqrt(2)) < 1e-7 and abs(float(g.sum())) < 1e-7


def _two_stage_packets(lum):
    """The depth-2 DT-CWPT written stage by stage from its definition (stride
    2, then an undecimated stage; Bayram-Selesnick tree swap): the 32 complex
    packets (N, 32, H', W') in the official order, before the conjugation."""
    ha, hb, ga, gb = (f.float() for f in qshift_filters())
    z1, z2 = ha.new_zeros(1), ha.new_zeros(2)
    # tree -> ((stage-1 filter, stage-2 (low, high)) for the low and high branch)
    trees = (((torch.cat([z2, ha]), (ha, ga)), (torch.cat([ga, z2]), (hb, gb))),
             ((torch.cat([z1, ha, z1]), (hb, gb)), (torch.cat([z1, -ga, z1]), (ha, ga))))

    def along(x, f, dim, stride):
        w = f.view(1, 1, -1, 1) if dim == 2 else f.view(1, 1, 1, -1)
        s = (stride, 1) if dim == 2 else (1, stride)
        return F.conv2d(x, w, stride=s)

    def packets_1d(x, tree, dim):
        out = []
        for first, second in trees[tree]:
            y = along(x, first, dim, 2)
            out += [along(y, f, dim, 1) for f in second]
        return out  # packet i = 2 * branch + stage-2 choice

    d = {}
    for p in range(2):
        for i, v in enumerate(packets_1d(lum, p, 2)):
            for q in range(2):
                for j, h in enumerate(packets_1d(v, q, 3)):
                    d[p, q, i, j] = h
    out = [None] * 32
    for i in range(4):
        for j in range(4):
            aa, ab, ba, bb = (d[p, q, i, j] for p, q in ((0, 0), (0, 1), (1, 0), (1, 1)))
            out[packet_index(0, i, j)] = torch.complex(aa - bb, ba + ab)
            out[packet_index(1, i, j)] = torch.complex(aa + bb, ba - ab)
    return torch.cat(out, 1)


def test_gabor_channels_follow_the_definition():
    """Luminance mix, two-stage DT-CWPT (padding 14 before), conjugation of the
    packets whose spectrum is at negative horizontal frequencies, the
    official packets, the grouped mixing (one Conv3d per group as the
    official MixModule), x[:, :, ::2, ::2], modulus, energy BN, ReLU."""
    stem = small_stem()
    x = torch.randn(2, 3, 36, 44)
    out = stem(x)
    lum = F.conv2d(x, stem.luminance.view(1, 3, 1, 1))
    z = _two_stage_packets(F.pad(lum, (14, 14, 14, 14)))
    # The official conjugation table (NEG_FOURIER_SUPPORT, depth 2): Psi_a
    # packets of even horizontal index j, Psi_b packets of odd j.
    neg = torch.tensor([(c < 16) == (c % 2 == 0) for c in range(32)])
    z = torch.where(neg.view(1, 32, 1, 1), z.conj(), z)[:, list(OFFICIAL_PACKETS)]
    maps, start = [], 0
    for w, n, g in zip(stem.mix_weights, OFFICIAL_MIX_IN, OFFICIAL_MIX_GROUPS):
        part = torch.view_as_real(z[:, start:start + n]).permute(0, 1, 4, 2, 3)
        maps.append(F.conv3d(part, w.view(*w.shape, 1, 1, 1), groups=g))
        start += n
    mixed = torch.cat(maps, 1)[:, :, :, ::2, ::2]
    modulus = torch.view_as_complex(mixed.permute(0, 1, 3, 4, 2).contiguous()).abs()
    energy = modulus.square().mean((0, 2, 3))
    bn = stem.gabor_norm
    expected = F.relu(modulus / torch.sqrt(energy / 2 + bn.eps).view(1, -1, 1, 1)
                      * bn.weight.abs().view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1))
    torch.testing.assert_close(out[:, 40:], expected, rtol=1e-4, atol=1e-4)
    # The free channels are the ResNet stem.
    torch.testing.assert_close(out[:, :40], stem.free_pool(stem.free(x)))
    assert out.shape == (2, 64, 9, 11) and sum(OFFICIAL_MIX_OUT) == 24


def test_packets_are_near_analytic_band_pass():
    kernels = complex_kernels(CModStem().packet_weight.double())
    spec = torch.fft.fft2(kernels, s=(64, 64)).abs().square()
    positive = spec[..., 1:32].sum((-2, -1)) / spec.sum((-2, -1))
    assert kernels.shape == (16, 30, 30)
    assert (positive > 0.75).all(), positive
    # Band-pass: no response to a constant image (to the coefficients' precision).
    assert kernels.sum((-2, -1)).abs().max() < 1e-6


def test_a_global_phase_on_the_complex_filters_leaves_the_output_unchanged():
    stem = small_stem()
    x = torch.randn(2, 3, 29, 37)
    c, s = math.cos(0.7), math.sin(0.7)
    rotation = torch.tensor([[c, -s], [s, c]])
    rotated = (rotation @ stem.packet_weight.view(16, 2, 64)).view(32, 64)
    for training in (True, False):
        stem.train(training)
        before, responses = stem(x), stem.complex_responses(x)
        stem.packet_weight, original = rotated, stem.packet_weight
        after, turned = stem(x), stem.complex_responses(x)
        stem.packet_weight = original
        torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
        # Not vacuous: the complex responses themselves change.
        assert (turned - responses).abs().max() > 0.1


def test_a_shift_by_four_pixels_shifts_the_output_by_one():
    """Exact in the interior (the stem's total stride is 4 on both branches;
    eval mode, so the norms do not depend on the shifted border)."""
    stem = small_stem().eval()
    big = torch.randn(1, 3, 68, 68)
    out = stem(big[..., :64, :64])
    for dy, dx in ((4, 0), (0, 4), (4, 4)):
        moved = stem(big[..., dy:dy + 64, dx:dx + 64])
        # Output n reads input rows 4n - 14 .. 4n + 15 (4n - 5 .. 4n + 5 for
        # the free channels): rows 4 .. 11 of 16 see no padding.
        torch.testing.assert_close(moved[..., 4:11, 4:11],
                                   out[..., 4 + dy // 4:11 + dy // 4, 4 + dx // 4:11 + dx // 4],
                                   rtol=1e-5, atol=1e-5)


def test_energy_norm():
    norm = BatchNormOnGaborModulus2d(3, momentum=0.5)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([-2.0, 1.0, 0.5]))
        norm.bias.copy_(torch.tensor([0.1, 0.0, -0.3]))
    x = torch.rand(1, 3, 5, 7) * 3  # one image per device trains
    energy = x.square().mean((0, 2, 3))
    scale = torch.tensor([2.0, 1.0, 0.5]) / torch.sqrt(energy / 2 + norm.eps)
    torch.testing.assert_close(norm(x), x * scale.view(1, 3, 1, 1)
                               + norm.bias.view(1, 3, 1, 1).detach())
    torch.testing.assert_close(norm.running_var, 0.5 + 0.5 * energy)
    norm.eval()
    scale = torch.tensor([2.0, 1.0, 0.5]) / torch.sqrt(norm.running_var / 2 + norm.eps)
    torch.testing.assert_close(norm(x), x * scale.view(1, 3, 1, 1)
                               + norm.bias.view(1, 3, 1, 1).detach())


def test_energy_norm_sums_across_ranks(monkeypatch):
    """With ``sync`` (host SyncBN) in a group of 2 ranks, the energy is that of
    both ranks' batches together. The other rank is simulated."""
    other = torch.rand(1, 2, 4, 4)
    monkeypatch.setattr(torch.distributed, 'is_initialized', lambda: True)
    monkeypatch.setattr(torch.distributed, 'get_world_size', lambda *a: 2)
    monkeypatch.setattr(dist_fn, 'all_reduce', lambda t: t + torch.cat(
        [other.square().sum((0, 2, 3)), t.new_tensor([other[:, 0].numel()])]))
    x = torch.rand(1, 2, 4, 4, requires_grad=True)
    synced = BatchNormOnGaborModulus2d(2, momentum=1.0, sync=True)
    synced(x).sum().backward()
    torch.testing.assert_close(synced.running_var, torch.cat([x, other]).square().mean((0, 2, 3)))
    assert x.grad is not None
    local = BatchNormOnGaborModulus2d(2, momentum=1.0)
    local(x)
    torch.testing.assert_close(local.running_var, x.square().mean((0, 2, 3)))


def test_channel_split_norms_and_errors():
    stem = CModStem(norm_cfg=dict(type='SyncBN'))
    assert (stem.free.conv.out_channels, stem.gabor_channels, stem.out_channels) == (40, 24, 64)
    assert isinstance(stem.free.bn, nn.SyncBatchNorm) and stem.gabor_norm.sync
    assert not CModStem().gabor_norm.sync
    torch.testing.assert_close(CModStem().luminance, torch.tensor([0.9802, 1.3060, 0.7138]))
    with pytest.raises(ValueError, match='free_channels'):
        CModStem(3, 64, free_channels=32)
    with pytest.raises(ValueError, match='luminance_init'):
        CModStem(4, 64)
    with pytest.raises(ValueError, match='distinct indices'):
        CModStem(packets=(1, 1) + OFFICIAL_PACKETS[2:])
    with pytest.raises(ValueError, match='mixing groups'):
        CModStem(mix_groups=(6, 4, 1, 4, 2))
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(CModStem())
    with pytest.raises(MMExtError, match="norm_cfg=dict\\(type='SyncBN'\\)"):
        converted(torch.randn(1, 3, 16, 16))


HOSTS = [dict(type='mmext.ResNet', depth=18), dict(type='mmext.ResNet', depth=50),
         dict(type='mmext.ResNetV1c', depth=18),
         dict(type='mmext.ResNeXt', depth=50, groups=4, base_width=4)]


@pytest.mark.parametrize('host', HOSTS, ids=lambda h: f"{h['type']}-{h['depth']}")
def test_hosts_keep_the_stage_shapes(host):
    """Small widths (stem 8 free + 24): every stage as the plain host, the
    deep stem of V1c replaced, the stem frozen at frozen_stages=0 and its
    norms in eval with norm_eval."""
    small = dict(host, base_channels=8, stem_channels=32)
    plain = MODELS.build(small)
    model = MODELS.build(dict(small, stem_cfg=dict(STEM, free_channels=8), frozen_stages=0,
                              norm_eval=True))
    model.train()
    assert isinstance(model.stem, CModStem) and not hasattr(model, 'conv1')
    assert not any(p.requires_grad for p in model.stem.parameters())
    assert not model.stem.gabor_norm.training and not model.stem.free.bn.training
    x = torch.randn(1, 3, 61, 83)
    assert [o.shape for o in model(x)] == [o.shape for o in plain(x)]


def test_batch_one_bf16_and_a_large_odd_size():
    model = MODELS.build(dict(type='mmext.ResNet', depth=18, base_channels=8, stem_channels=32,
                              stem_cfg=dict(STEM, free_channels=8)))
    model.init_weights()
    # init_weights keeps the official luminance init (no Conv2d init reaches it).
    torch.testing.assert_close(model.stem.luminance, torch.tensor([0.9802, 1.3060, 0.7138]))
    model.train()
    outs = model(torch.randn(1, 3, 97, 131))  # one image per device trains
    sum(o.sum() for o in outs).backward()
    grads = [p.grad for p in model.stem.parameters()]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
    model.eval()
    with torch.no_grad():
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert not any(torch.isnan(o).any() for o in model(torch.randn(1, 3, 97, 131)))
        outs = model(torch.randn(1, 3, 511, 673))
    assert [tuple(o.shape[-2:]) for o in outs] == [(128, 169), (64, 85), (32, 43), (16, 22)]
    assert all(torch.isfinite(o).all() for o in outs)
