"""HAT-Net: published sizes, the official checkpoint layout, and H-MHSA
against a hand reference (also at sizes that are not multiples of the grid)."""
import functools

import pytest
import torch
from backbone_checks import (check_official_checkpoint, count_params)

from mmext.analysis.flops import count_flops
from mmext.models.backbones import hatnet as hatnet_module
from mmext.models.backbones.hatnet import HATNet, HMHSA
from mmext.registry import MODELS

# yun-liu/HAT-Net README. Classification form: backbone + Linear(C_last, 1000)
# (the official head is GAP -> dropout -> linear, no final norm).
PUBLISHED_PARAMS = {'tiny': 12.7e6, 'small': 25.7e6, 'medium': 42.9e6, 'large': 63.1e6}
PUBLISHED_FLOPS = {'tiny': 2.0e9, 'small': 4.3e9, 'medium': 8.3e9, 'large': 11.5e9}


def _classifier(model):
    return model.arch['dims'][-1] * 1000 + 1000


@pytest.mark.parametrize('arch', list(PUBLISHED_PARAMS))
def test_params_match_published(arch):
    model = HATNet(arch=arch)
    n = count_params(model) + _classifier(model)
    assert abs(n / PUBLISHED_PARAMS[arch] - 1) < 0.01, (arch, n)


@pytest.mark.parametrize('arch', ['tiny', 'small'])
def test_flops_match_published(arch):
    """The published FLOPs are the convolutions and norms: the counter's
    figure without the attention matmuls is within 1% of them for all four
    variants, with them it is 6-7% higher (tiny: +0.16G). So the matmuls
    are checked to be counted, and left out of the comparison."""
    model = HATNet(arch=arch).eval()
    count = count_flops(model, torch.randn(1, 3, 224, 224))
    attention = count.by_operator['scaled_dot_product_attention']
    assert attention > 0.05 * count.total
    flops = count.total - attention + model.arch['dims'][-1] * 1000
    assert abs(flops / PUBLISHED_FLOPS[arch] - 1) < 0.05, (arch, flops)


def test_arch_errors_and_custom_dict():
    with pytest.raises(ValueError, match='tiny'):
        HATNet(arch='huge')
    with pytest.raises(ValueError, match='4 entries'):
        HATNet(arch=dict(dims=[8, 16]))
    custom = dict(dims=[8, 16, 16, 32], depths=[1, 1, 1, 1], head_dim=8,
                  expansions=[2, 2, 2, 2], kernel_sizes=[3, 5, 3, 3],
                  grid_sizes=[4, 3, 2, 1], ds_ratios=[4, 2, 2, 1])
    model = MODELS.build(dict(type='mmext.HATNet', arch=custom)).eval()
    outs = model(torch.randn(1, 3, 33, 47))
    assert [tuple(o.shape[1:]) for o in outs] == [(8, 9, 12), (16, 5, 6), (16, 3, 3),
                                                  (32, 2, 2)]
    with pytest.raises(ValueError, match='head_dim'):
        HATNet(arch=dict(custom, head_dim=5))


# -- official checkpoint ---------------------------------------------------------------
def to_official(sd):
    """mmext keys -> yun-liu/HAT-Net keys. The names are the official ones;
    the official Attention also holds a ``proj_norm`` (GN) that its forward
    never uses, so the file has one more pair of tensors per block."""
    out = dict(sd)
    for k, v in sd.items():
        if k.endswith('.attn.proj.weight'):
            c = v.shape[0]
            out[k.replace('.proj.weight', '.proj_norm.weight')] = torch.ones(c)
            out[k.replace('.proj.weight', '.proj_norm.bias')] = torch.zeros(c)
    return out


def test_official_layout_keys():
    keys = set(to_official(HATNet(arch='tiny').state_dict()))
    for k in ('patch_embed.0.weight', 'patch_embed.1.weight', 'patch_embed.3.weight',
              'blocks.0.1.attn.norm.weight', 'blocks.0.1.attn.qkv.weight',
              'blocks.0.1.attn.proj.weight', 'blocks.0.1.attn.proj_norm.weight',
              'blocks.0.1.attn.grid_norm.weight', 'blocks.0.1.attn.ds_norm.weight',
              'blocks.0.1.attn.q.weight', 'blocks.0.1.attn.kv.weight',
              'blocks.2.5.conv.conv1.0.weight', 'blocks.2.5.conv.conv1.1.weight',
              'blocks.2.5.conv.conv2.0.weight', 'blocks.2.5.conv.conv3.0.weight',
              'blocks.2.5.conv.conv3.1.weight', 'ds2.conv.weight', 'ds4.norm.bias'):
        assert k in keys, k
    # The last stage attends globally: no local-window modules there.
    assert not any(k.startswith('blocks.3.0.attn.q.') for k in keys)


def test_official_checkpoint(tmp_path):
    check_official_checkpoint(
        functools.partial(HATNet, arch='tiny'), to_official, tmp_path, 'HATNet', 'tiny',
        classifier={'classifier.1.weight': torch.zeros(1000, 384),
                    'classifier.1.bias': torch.zeros(1000)})


# -- H-MHSA ----------------------------------------------------------------------------
def reference_hmhsa(m, x):
    """H-MHSA written token by token from the paper: softmax attention among
    the real tokens of each G x G window, GN(x + local), every token queried
    against the mean of each r x r cell of the local result (partial border
    cells average their real tokens), sum with the local result, 1x1 proj."""
    n, c, h, w = x.shape
    nh, d, g, r = m.num_heads, m.head_dim, m.grid_size, m.ds_ratio

    def attend(q, k, v):  # (tokens, c) each; per head
        outs = []
        for i in range(nh):
            s = slice(i * d, (i + 1) * d)
            a = (q[:, s] @ k[:, s].T / d**0.5).softmax(-1)
            outs.append(a @ v[:, s])
        return torch.cat(outs, 1)

    qkv = m.qkv(m.norm(x))
    out = torch.zeros_like(x)
    if g == 1:
        for b in range(n):
            t = qkv[b].flatten(1).T
            out[b] = attend(t[:, :c], t[:, c:2 * c], t[:, 2 * c:]).T.reshape(c, h, w)
        return m.proj(out)
    local = torch.zeros_like(x)
    for b in range(n):
        for y0 in range(0, h, g):
            for x0 in range(0, w, g):
                win = qkv[b, :, y0:y0 + g, x0:x0 + g]
                wh, ww = win.shape[-2:]
                t = win.flatten(1).T
                o = attend(t[:, :c], t[:, c:2 * c], t[:, 2 * c:])
                local[b, :, y0:y0 + g, x0:x0 + g] = o.T.reshape(c, wh, ww)
    local = m.grid_norm(x + local)
    cells = torch.stack([
        torch.stack([local[:, :, y0:y0 + r, x0:x0 + r].mean((2, 3)) for x0 in range(0, w, r)], -1)
        for y0 in range(0, h, r)], -2)
    kv = m.kv(m.ds_norm(cells))
    q = m.q(local)
    for b in range(n):
        k_, v_ = kv[b, :c].flatten(1).T, kv[b, c:].flatten(1).T
        out[b] = attend(q[b].flatten(1).T, k_, v_).T.reshape(c, h, w)
    return m.proj(out + local)


@pytest.mark.parametrize('size', [(8, 12), (10, 13), (3, 5)])
@pytest.mark.parametrize('grid,ratio', [(4, 2), (4, 3), (1, 1)])
def test_hmhsa_matches_hand_reference(size, grid, ratio):
    torch.manual_seed(0)
    m = HMHSA(8, 4, grid_size=grid, ds_ratio=ratio).eval()
    for p in m.parameters():  # GN affine away from the identity
        torch.nn.init.normal_(p, std=0.5)
    x = torch.randn(2, 8, *size)
    with torch.no_grad():
        torch.testing.assert_close(m(x), reference_hmhsa(m, x), atol=1e-5, rtol=1e-4)


def _explicit_attention(q, k, v, key_mask=None):
    attn = (q * q.shape[-1]**-0.5) @ k.transpose(-2, -1)
    if key_mask is not None:
        attn = attn.masked_fill(~key_mask, float('-inf'))
    return attn.softmax(dim=-1) @ v


def test_hmhsa_attention_flops_equal_explicit_matmuls(monkeypatch):
    """mmext's handle for the fused attention counts what mmengine counts for
    the same attention written as two matmuls (padded windows included), and
    both forms compute the same output."""
    torch.manual_seed(0)
    m = HMHSA(16, 8, grid_size=7, ds_ratio=4).eval()
    x = torch.randn(1, 16, 17, 23)
    fused = count_flops(m, x)
    with torch.no_grad():
        out = m(x)
    monkeypatch.setattr(hatnet_module, '_attend', _explicit_attention)
    explicit = count_flops(m, x)
    with torch.no_grad():
        torch.testing.assert_close(m(x), out, atol=1e-5, rtol=1e-4)
    assert 'matmul' not in fused.by_operator
    assert fused.by_operator['scaled_dot_product_attention'] == explicit.by_operator['matmul']
    assert fused.total == explicit.total
    # By hand: local windows padded to 21x28 -> 12 windows of 49 tokens, then
    # 5x6 pooled tokens (17x23 average-pooled by 4, ceil) attended by all
    # 391 tokens; 16 channels (8 per head) for q k^T and for attn v.
    local = 12 * 49 * 49 * 16 * 2
    global_ = 17 * 23 * 5 * 6 * 16 * 2
    assert fused.by_operator['scaled_dot_product_attention'] == local + global_


def test_padding_does_not_leak_into_real_tokens():
    """A border window that needed padding attends among its real tokens
    only: its output equals that of the window's real tokens alone."""
    torch.manual_seed(0)
    m = HMHSA(8, 8, grid_size=4).eval()
    qkv = torch.randn(1, 24, 10, 9)
    with torch.no_grad():
        out = m._local(qkv)
        corner = m._local(qkv[..., 8:, 8:].contiguous())
        band = m._local(qkv[..., 4:8, 8:].contiguous())
    assert out.shape[-2:] == (10, 9)
    torch.testing.assert_close(out[..., 8:, 8:], corner)
    torch.testing.assert_close(out[..., 4:8, 8:], band)
