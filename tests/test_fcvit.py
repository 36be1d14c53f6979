"""FCViT: parameter counts, output norms per out_index, the official
checkpoint layout and a hand reference of the global context."""
import functools
import math
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from backbone_checks import check_official_checkpoint, count_params, same_names_as

from mmext.models.backbones.fcvit import FCViT, GlobalContext, TokenMixer
from mmext.registry import MODELS

# Classification form (backbone + final GroupNorm + Linear(C, 1000)) of the
# official models/fcvit.py (fcvit_tiny / b12 / b24 / b48), counted by
# instantiating that code: the released architecture.
RELEASED = {'tiny': 4_784_752, 'b12': 14_701_832, 'b24': 26_960_232, 'b48': 51_477_032}
# The README / paper figures (catalog: B12 14M, B24 25.7M). They are ~4-5%
# below the released code for every variant alike, so no published variant
# is reachable without changing shapes the official checkpoints hold; the
# tolerance documents the gap (docs/designs/fcvit.md, "Deviations").
PUBLISHED = {'tiny': 4.6e6, 'b12': 14.0e6, 'b24': 25.7e6, 'b48': 49.1e6}
PUBLISHED_GAP = 0.052


def classification_params(arch):
    model = FCViT(arch=arch)
    dense_only = sum(p.numel() for k, p in model.named_parameters()
                     if re.match(r'norm[0246]\.', k))
    c = model.out_channels[-1]
    return count_params(model) - dense_only + 2 * c + (c * 1000 + 1000)


@pytest.mark.parametrize('arch', ['tiny', 'b12', 'b24', 'b48'])
def test_param_counts(arch):
    n = classification_params(arch)
    assert n == RELEASED[arch]
    assert abs(n - PUBLISHED[arch]) / PUBLISHED[arch] < PUBLISHED_GAP


def test_output_norms_follow_out_indices():
    # RetinaNet reads stages 1-3: no norm0 (the official FORK_LAST3 switch).
    model = FCViT(arch='tiny', out_indices=(1, 2, 3))
    assert not hasattr(model, 'norm0')
    assert all(isinstance(getattr(model, f'norm{i}'), nn.GroupNorm) for i in (2, 4, 6))
    assert model.stage_modules(0) == [model.patch_embed, model.network[0]]
    outs = model(torch.randn(1, 3, 65, 33))
    assert [tuple(o.shape[-2:]) for o in outs] == [(9, 5), (5, 3), (3, 2)]


def test_arch_and_build():
    assert MODELS.build(dict(type='mmext.FCViT', arch='S12')).arch == FCViT.arch_settings['b12']
    custom = dict(depths=[1, 1, 1, 1], embed_dims=[16, 32, 48, 64], mlp_ratios=[2, 2, 2, 2],
                  mixer_cfg=dict(kernel_size=5))
    model = FCViT(arch=custom)
    assert model.network[0][0].token_mixer.dw1.kernel_size == (5, 5)
    assert [o.shape[1] for o in model(torch.randn(1, 3, 35, 29))] == [16, 32, 48, 64]
    with pytest.raises(ValueError, match='b12'):
        FCViT(arch='b36')
    with pytest.raises(ValueError, match='depths'):
        FCViT(arch=dict(depths=[1, 1, 1, 1]))
    with pytest.raises(ValueError, match='out_indices'):
        FCViT(arch='tiny', out_indices=(4, ))
    with pytest.raises(ValueError, match='divisible'):
        GlobalContext(20, num_heads=8)


# The official classification layout (../shared/checkpoint_layouts.md, FCViT).
_OFFICIAL_KEY = re.compile(
    r'^(patch_embed\.(proj|norm)\.'
    r'|network\.[0246]\.\d+\.(norm1|norm2|layer_scale_1|layer_scale_2'
    r'|token_mixer\.gc[12]\.(fc1|fc2|rescale_weight|rescale_bias)'
    r'|token_mixer\.dw[12]\.|token_mixer\.fc[12]\.[02]\.'
    r'|channel_mixer\.(fc1|dwconv|fc2)\.)'
    r'|network\.[135]\.(proj|norm)\.)')


# Written from the documented layout: the same names; the classifier adds norm.* / head.*
# (passed separately).
to_official = same_names_as(_OFFICIAL_KEY.pattern)


def test_official_checkpoint(tmp_path):
    c = FCViT.arch_settings['tiny']['embed_dims'][-1]
    check_official_checkpoint(
        functools.partial(FCViT, arch='tiny'), to_official, tmp_path, 'FCViT', 'tiny',
        classifier={'norm.weight': torch.ones(c), 'norm.bias': torch.zeros(c),
                    'head.weight': torch.zeros(1000, c), 'head.bias': torch.zeros(1000)},
        expected_missing=(r'^norm[0246]\.', ))


def test_official_dense_checkpoint_has_no_missing_keys(tmp_path):
    # The official fcvit_b*_feat backbones carry norm0/2/4/6 under the same names.
    src = FCViT(arch='tiny').state_dict()
    torch.save({'state_dict': {'backbone.' + k: v for k, v in src.items()}}, tmp_path / 'd.pth')
    report = FCViT(arch='tiny').load_pretrained(str(tmp_path / 'd.pth'), prefix='backbone.')
    assert report == dict(missing=[], unexpected=[], expected_missing=[])


def test_official_initialisation():
    model = FCViT(arch='tiny')
    model.init_weights()
    mixer = model.network[4][0].token_mixer
    # Per-group fan-out: a depth-wise 11x11 filter has std sqrt(2 / 121).
    assert abs(mixer.dw1.weight.std().item() - math.sqrt(2 / 121)) < 0.01
    fc = mixer.fc1[0]  # 1x1, 160 -> 20: std sqrt(2 / 20)
    assert abs(fc.weight.std().item() - math.sqrt(2 / 20)) < 0.03
    assert abs(mixer.gc1.fc1.weight.std().item() - 0.02) < 0.003
    assert torch.equal(mixer.gc1.fc1.bias, torch.zeros_like(mixer.gc1.fc1.bias))
    assert torch.allclose(model.network[0][0].layer_scale_1, torch.full((32, ), 1e-6))


def reference_global_context(gc, x):
    """Loops over heads and positions."""
    b, c, h, w = x.shape
    g = gc.num_heads
    d = c // g
    out = torch.empty_like(x)
    for n in range(b):
        tokens = x[n].reshape(c, h * w)
        gap = tokens.mean(1)
        sim = torch.empty(g, h * w)
        for head in range(g):
            for p in range(h * w):
                q = tokens[head * d:(head + 1) * d, p]
                sim[head, p] = (q * gap[head * d:(head + 1) * d]).sum() / math.sqrt(d)
        sim = (sim - sim.mean()) / (sim.std() + gc.eps)
        sim = sim * gc.rescale_weight[:, None] + gc.rescale_bias[:, None]
        codes = gc.fc1(gap)
        ctx = gc.fc2(torch.maximum(codes[:len(codes) // 2], codes[len(codes) // 2:]))
        for head in range(g):
            out[n, head * d:(head + 1) * d] = (
                sim[head][None] * ctx[head * d:(head + 1) * d, None]).reshape(d, h, w)
    return out


def test_global_context_hand_reference():
    torch.manual_seed(0)
    gc = GlobalContext(16, num_heads=4, reduction=4)
    with torch.no_grad():
        gc.rescale_weight.uniform_(0.5, 2)
        gc.rescale_bias.uniform_(-1, 1)
    x = torch.randn(2, 16, 3, 5)
    torch.testing.assert_close(gc(x), reference_global_context(gc, x))
    # A spatially constant map gives a spatially constant context (the
    # similarity of a head is the same everywhere).
    const = torch.randn(1, 16, 1, 1).expand(1, 16, 4, 3).contiguous()
    out = gc(const)
    torch.testing.assert_close(out, out[:, :, :1, :1].expand_as(out))


def test_token_mixer_composition():
    torch.manual_seed(0)
    mixer = TokenMixer(32, kernel_size=5, num_heads=8).eval()
    x = torch.randn(1, 32, 7, 9)

    def step(x, gc, dw, fc):
        x = x + gc(x)
        x = F.conv2d(x, dw.weight, dw.bias, padding=2, groups=32)
        x = F.conv2d(F.gelu(F.conv2d(x, fc[0].weight, fc[0].bias)), fc[2].weight, fc[2].bias)
        return F.gelu(x)

    ref = step(step(x, mixer.gc1, mixer.dw1, mixer.fc1), mixer.gc2, mixer.dw2, mixer.fc2)
    torch.testing.assert_close(mixer(x), ref)
    # min_hidden: 32 / 8 = 4 is raised to 16 as in the official code.
    assert mixer.fc1[0].out_channels == 16
