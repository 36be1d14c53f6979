"""SKConv: branch structure and selection, SKNet-50 parameter count."""
import pytest
import torch
import torch.nn as nn

from mmext.models.layers import SKConv
from mmext.registry import MODELS


def test_branch_structure():
    conv = SKConv(64, 64, 3, stride=2, padding=2, dilation=2, groups=32)
    convs = [b.conv for b in conv.branches]
    assert [c.dilation for c in convs] == [(2, 2), (4, 4)]
    assert [c.padding for c in convs] == [(2, 2), (4, 4)]
    assert all(c.groups == 32 and c.stride == (2, 2) and c.bias is None for c in convs)
    # d = max(C / r, L)
    assert conv.fuse_channels == 32
    assert SKConv(1024, 1024, groups=32).fuse_channels == 64
    x = torch.randn(2, 64, 15, 17)
    ref = nn.Conv2d(64, 64, 3, 2, 2, 2)
    assert conv(x).shape == ref(x).shape


def test_attention_is_softmax_over_branches():
    conv = SKConv(16, 16, num_branches=3)
    feats = torch.randn(2, 16, 9, 9)
    attn = conv.branch_attention(feats)
    assert attn.shape == (2, 3, 16, 1, 1)
    assert torch.allclose(attn.sum(1), torch.ones(2, 16, 1, 1))


@pytest.mark.parametrize('selected', [0, 1])
def test_forced_selection_equals_one_branch(selected):
    torch.manual_seed(0)
    conv = SKConv(16, 16, 3, 1, 1, groups=4)
    for m in conv.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial eval statistics
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
    conv.eval()
    # Make the fuse output a constant 1 whatever the input (zero fc weight,
    # BN with zero mean / unit var and bias 1), then give the selected branch
    # a logit of +50 and the other -50: the softmax is exactly (1, 0).
    with torch.no_grad():
        conv.fc.conv.weight.zero_()
        bn = conv.fc.bn
        bn.running_mean.zero_()
        bn.running_var.fill_(1 - bn.eps)
        bn.weight.fill_(1)
        bn.bias.fill_(1)
        logits = torch.full((2, 16, conv.fuse_channels), -50.0 / conv.fuse_channels)
        logits[selected] *= -1
        conv.select_fc.weight.copy_(logits.view(32, -1, 1, 1))
    x = torch.randn(2, 16, 11, 13)
    with torch.no_grad():
        attn = conv.branch_attention(torch.randn(2, 16, 11, 13))
        assert torch.equal(attn[:, selected], torch.ones_like(attn[:, selected]))
        assert torch.allclose(conv(x), conv.branches[selected](x), atol=1e-6)
        assert not torch.allclose(conv(x), conv.branches[1 - selected](x), atol=1e-3)


def test_sknet50_params():
    # SKNet-50 = ResNeXt-50 (32x4d) with every bottleneck 3x3 replaced by the
    # SK unit. The host keeps its norm2 BN after the SK unit (not in the
    # official network: +2*width per block, ~15k parameters in total).
    backbone = MODELS.build(
        dict(type='mmext.ResNeXt', depth=50, groups=32, base_width=4,
             dcn=dict(type='mmext.SKConv'), stage_with_dcn=(True, True, True, True)))
    sk = [m for m in backbone.modules() if isinstance(m, SKConv)]
    assert len(sk) == 16
    assert all(b.conv.groups == 32 for m in sk for b in m.branches)
    params = sum(p.numel() for p in backbone.parameters()) + 2048 * 1000 + 1000
    assert abs(params / 27.5e6 - 1) < 0.01, params
    backbone.eval()
    with torch.no_grad():
        outs = backbone(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [256, 512, 1024, 2048]
