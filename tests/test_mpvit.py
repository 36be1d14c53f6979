"""MPViT: published sizes and output widths, the official checkpoint layout,
and the defining pieces (multi-scale patch embedding, factorized attention
with convolutional relative position encoding)."""
import functools
import math
import re

import pytest
import torch
import torch.nn.functional as F
from backbone_checks import check_official_checkpoint, count_params
from mmengine.analysis import FlopAnalyzer

from mmext.models.backbones.mpvit import MPViT, ConvRelPosEnc, FactorizedAttention
from mmext.registry import MODELS

# Classification form: backbone + Linear(C_last, 1000) (the official head is a
# global average pool and one linear layer, no final norm).
PUBLISHED_PARAMS = {'tiny': 5.8e6, 'xsmall': 10.5e6, 'small': 22.8e6, 'base': 74.8e6}
# Exact counts in the official model docstrings (youngwanLEE/MPViT mpvit.py).
OFFICIAL_PARAMS = {'tiny': 5843736, 'xsmall': 10573448, 'small': 22892400, 'base': 74845976}
# Catalog (paper Table 1): T 1.6G, S 4.7G; README: XS 2.9G.
PUBLISHED_FLOPS = {'tiny': 1.6e9, 'xsmall': 2.9e9, 'small': 4.7e9}
# The stage outputs, widened by the aggregation to the next stage's width
# (official detection / segmentation code).
CHANNELS = {'tiny': (96, 176, 216, 216), 'xsmall': (128, 192, 256, 256),
            'small': (128, 216, 288, 288), 'base': (224, 368, 480, 480)}


def _classifier_params(model):
    return model.arch['embed_dims'][-1] * 1000 + 1000


@pytest.mark.parametrize('arch', list(PUBLISHED_PARAMS))
def test_params_match_published(arch):
    model = MPViT(arch=arch)
    n = count_params(model) + _classifier_params(model)
    assert abs(n / PUBLISHED_PARAMS[arch] - 1) < 0.01, (arch, n)
    assert n == OFFICIAL_PARAMS[arch]
    # The output contract itself (out_channels vs the maps) runs on a small
    # instance in test_backbone_contract.py.
    assert model.out_channels == CHANNELS[arch]


@pytest.mark.parametrize('arch', list(PUBLISHED_FLOPS))
def test_flops_match_published(arch):
    model = MPViT(arch=arch).eval()
    analyzer = FlopAnalyzer(model, (torch.randn(1, 3, 224, 224), ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    flops = analyzer.total() + model.arch['embed_dims'][-1] * 1000
    assert abs(flops / PUBLISHED_FLOPS[arch] - 1) < 0.05, (arch, flops)


def test_aliases():
    for alias, name in (('t', 'tiny'), ('xs', 'xsmall'), ('S', 'small'), ('b', 'base')):
        assert MPViT.resolve_arch(alias) == MPViT.arch_settings[name]


def test_arch_errors_and_custom_dict():
    with pytest.raises(ValueError, match='tiny'):
        MPViT(arch='huge')
    with pytest.raises(ValueError, match='4 entries'):
        MPViT(arch=dict(num_path=[2, 3]))
    custom = dict(num_path=[1, 2, 2, 2], num_layers=[1, 1, 1, 1], embed_dims=[16, 32, 32, 48],
                  mlp_ratios=[2, 2, 2, 2], num_heads=[4, 4, 4, 4], crpe_windows={3: 2, 5: 2})
    model = MODELS.build(dict(type='mmext.MPViT', arch=custom)).eval()
    outs = model(torch.randn(1, 3, 33, 47))
    assert [tuple(o.shape[1:]) for o in outs] == [(32, 9, 12), (32, 5, 6), (48, 3, 3),
                                                  (48, 2, 2)]
    with pytest.raises(ValueError, match='heads'):
        MPViT(arch=dict(custom, crpe_windows={3: 2, 5: 3, 7: 3}))


# -- official checkpoint ---------------------------------------------------------------
def to_official(sd, num_layers):
    """mmext keys -> youngwanLEE/MPViT classification keys, written from the
    official module tree: ``patch_embed_stages.{i}.patch_embeds.{p}.patch_conv``,
    ``mhca_stages.{i}.mhca_blks.{p}.{cpe.proj, crpe.conv_list.{k},
    MHCA_layers.{j}.{norm1, factoratt_crpe.{qkv, proj}, norm2, mlp.{fc1, fc2}}}``,
    ``mhca_stages.{i}.{InvRes, aggregate}``. The official blocks register the
    encoder's shared cpe / crpe again, so its state dict repeats them under
    ``MHCA_layers.{j}.cpe``, ``.crpe`` and ``.factoratt_crpe.crpe``."""
    out = {}
    for k, v in sd.items():
        m = re.match(r'patch_embeds\.(\d+)\.steps\.(\d+)\.(.*)', k)
        if m:
            out['patch_embed_stages.{}.patch_embeds.{}.patch_conv.{}'.format(*m.groups())] = v
            continue
        m = re.match(r'stages\.(\d+)\.(local_conv|aggregate)\.(.*)', k)
        if m:
            i, part, rest = m.groups()
            out[f"mhca_stages.{i}.{ {'local_conv': 'InvRes'}.get(part, part)}.{rest}"] = v
            continue
        m = re.match(r'stages\.(\d+)\.paths\.(\d+)\.(.*)', k)
        if m:
            i, p, rest = m.groups()
            enc = f'mhca_stages.{i}.mhca_blks.{p}.'
            if rest.startswith('cpe.'):
                tail = 'cpe.proj.' + rest[len('cpe.'):]
                out[enc + tail] = v
                for j in range(num_layers[int(i)]):
                    out[f'{enc}MHCA_layers.{j}.{tail}'] = v
            elif rest.startswith('crpe.convs.'):
                tail = 'crpe.conv_list.' + rest[len('crpe.convs.'):]
                out[enc + tail] = v
                for j in range(num_layers[int(i)]):
                    out[f'{enc}MHCA_layers.{j}.{tail}'] = v
                    out[f'{enc}MHCA_layers.{j}.factoratt_crpe.{tail}'] = v
            else:
                rest = re.sub(r'^blocks\.(\d+)\.attn\.', r'blocks.\1.factoratt_crpe.', rest)
                out[enc + rest.replace('blocks.', 'MHCA_layers.', 1)] = v
            continue
        assert k.startswith('stem.'), k
        out[k] = v
    return out


def test_official_checkpoint(tmp_path):
    layers = MPViT.arch_settings['tiny']['num_layers']
    check_official_checkpoint(
        functools.partial(MPViT, arch='tiny'), functools.partial(to_official, num_layers=layers),
        tmp_path, 'MPViT', 'tiny',
        classifier={'cls_head.cls.weight': torch.zeros(1000, 216),
                    'cls_head.cls.bias': torch.zeros(1000)})


@pytest.mark.parametrize('prefix', ['backbone.', 'backbone.bottom_up.backbone.'])
def test_wrapped_official_layouts(tmp_path, prefix):
    """The mmseg and Detectron2 releases hold the same names under a wrapper."""
    src = MPViT(arch='tiny')
    ref = src.state_dict()
    official = to_official(ref, MPViT.arch_settings['tiny']['num_layers'])
    torch.save({'state_dict': {prefix + k: v for k, v in official.items()}},
               tmp_path / 'w.pth')
    dst = MPViT(arch='tiny')
    report = dst.load_pretrained(str(tmp_path / 'w.pth'))
    assert report['missing'] == [] and report['unexpected'] == []
    for k, v in dst.state_dict().items():
        torch.testing.assert_close(v, ref[k])


# -- defining pieces ---------------------------------------------------------------------
def test_multi_scale_patch_embedding_receptive_fields():
    """Path p of a stride-1 stage sees a (3 + 2p) x (3 + 2p) window."""
    model = MPViT(arch='tiny').eval()
    embed = model.patch_embeds[1]  # 3 paths; its first step has stride 2
    stage0 = model.patch_embeds[0]
    x = torch.randn(1, 64, 21, 21, requires_grad=True)
    for p, out in enumerate(stage0(x)):
        grad, = torch.autograd.grad(out[0, :, 10, 10].sum(), x, retain_graph=True)
        rows = grad[0].abs().sum(0).sum(1).nonzero().flatten()
        assert rows.numel() == 3 + 2 * p
    outs = embed(torch.randn(1, 96, 21, 21))
    assert len(outs) == 3 and all(o.shape[-2:] == (11, 11) for o in outs)


def test_factorized_attention_against_hand_reference():
    torch.manual_seed(0)
    dim, heads, (h, w) = 32, 8, (5, 7)
    ch = dim // heads
    attn = FactorizedAttention(dim, heads)
    crpe = ConvRelPosEnc(ch, {3: 2, 5: 3, 7: 3})
    x = torch.randn(2, h * w, dim)
    out = attn(x, (h, w), crpe)

    qkv = attn.qkv(x).view(2, h * w, 3, heads, ch)
    ref = torch.empty(2, h * w, heads, ch)
    kernel_of_head = [3] * 2 + [5] * 3 + [7] * 3
    for b in range(2):
        for hd in range(heads):
            q, k, v = (qkv[b, :, i, hd] for i in range(3))  # (N, Ch)
            weights = torch.softmax(k, dim=0)  # softmax over tokens, per channel
            factor = torch.stack([
                sum(q[n, c] * sum(weights[m, c] * v[m, :] for m in range(h * w))
                    for c in range(ch)) for n in range(h * w)])
            conv = crpe.convs[[3, 5, 7].index(kernel_of_head[hd])]
            first = {3: 0, 5: 2, 7: 5}[kernel_of_head[hd]]
            sl = slice((hd - first) * ch, (hd - first + 1) * ch)
            v_img = v.t().reshape(1, ch, h, w)
            conv_v = F.conv2d(v_img, conv.weight[sl], conv.bias[sl],
                              padding=conv.padding, groups=ch)
            ref[b, :, hd] = ch**-0.5 * factor + q * conv_v.reshape(ch, h * w).t()
    ref = attn.proj(ref.reshape(2, h * w, dim))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_attention_cost_is_linear_in_tokens():
    """No N x N attention map: 4x the tokens cost 4x the FLOPs."""
    attn = FactorizedAttention(64, 8)
    crpe = ConvRelPosEnc(8, {3: 2, 5: 3, 7: 3})
    flops = []
    for hw in ((16, 16), (32, 32)):
        analyzer = FlopAnalyzer(_AttnWrapper(attn, crpe, hw),
                                (torch.randn(1, hw[0] * hw[1], 64), ))
        analyzer.unsupported_ops_warnings(False)
        flops.append(analyzer.total())
    assert math.isclose(flops[1] / flops[0], 4, rel_tol=0.01)


class _AttnWrapper(torch.nn.Module):

    def __init__(self, attn, crpe, size):
        super().__init__()
        self.attn, self.crpe, self.size = attn, crpe, size

    def forward(self, x):
        return self.attn(x, self.size, self.crpe)


def test_position_encodings_shared_per_path():
    """cpe / crpe are one module per path, shared by its blocks (official)."""
    model = MPViT(arch='small')
    path = model.stages[2].paths[0]
    assert len(path.blocks) == 6
    names = [n for n, _ in path.named_parameters()]
    assert sum(n.startswith('cpe.') for n in names) == 2
    assert not any('.cpe.' in n or '.crpe.' in n for n in names if n.startswith('blocks.'))
