"""MinBlock (Min-Nets): the official CIFAR Min-Net parameter counts, the
block against its definition written with torch.nn.functional, the gradient
of the minimum, the 1x1-map case, and the ResNet hosts.

Shape, gradient, bf16 and one-image checks of the block itself are the
shared ones (tests/test_component_contract.py)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from backbone_checks import count_params
from design_checks import randomize, randomize_norms, run_or_one_value_error

import mmext.models  # noqa: F401
from mmext.models.layers import MinBlock
from mmext.registry import MODELS


class PyramidBasicBlock(nn.Module):
    """The CIFAR baseline's block (official ``PyramidBasicBlock``): BN, 3x3
    conv, BN, ReLU, 3x3 conv, BN; average-pool / zero-pad shortcut, no ReLU
    after the sum. Only its parameters matter here."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(c_in), nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out))


def cifar_net(n, min_blocks):
    """The official CIFAR ResNet of ``models/cifar_base_model.py``: 3x3 conv
    (16) + BN + ReLU, three stacks of ``n`` blocks at widths 16 / 32 / 64
    (the first of stacks 2 and 3 at stride 2), global pooling, a 10-way
    linear layer. ``CifarMinFP-LS`` makes the first block of each stack a
    Min block (q = 2, k = 3); ``CifarPyrResNet`` keeps them all basic."""
    layers = [nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    c_in = 16
    for c_out, stride in ((16, 1), (32, 2), (64, 2)):
        for i in range(n):
            s = stride if i == 0 else 1
            first = MinBlock(c_in, c_out, stride=s, q=2) if min_blocks and i == 0 else None
            layers.append(first or PyramidBasicBlock(c_in, c_out, s))
            c_in = c_out
    return nn.Sequential(*layers, nn.Linear(64, 10))


@pytest.mark.parametrize('n,min_net,baseline', [(3, 217_082, 270_298), (5, 411_962, 465_178)])
def test_official_cifar_parameter_counts(n, min_net, baseline):
    """Catalog C1 (measured on the official code, equal to its logs)."""
    assert count_params(cifar_net(n, True)) == min_net
    assert count_params(cifar_net(n, False)) == baseline


def functional_min_block(block, x):
    """The block written out with torch.nn.functional from the official
    ``_FPBlockJOV`` / ``ResidualAdapter`` description (BN with batch
    statistics in training, running ones in eval)."""
    def bn(module, y):
        norm = module.norm
        return F.batch_norm(y, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                            block.training, 0.0, norm.eps)

    def branch(seq, y):
        conv = seq[0]
        y = F.conv2d(y, conv.weight, None, conv.stride, conv.padding, conv.dilation,
                     conv.groups)
        return F.relu(F.instance_norm(y))

    y = F.relu(bn(block.upper, F.conv2d(x, block.upper.conv.weight)))
    y = torch.minimum(branch(block.left_dw, y), branch(block.right_dw, y))
    y = F.relu(bn(block.lower, F.conv2d(y, block.lower.conv.weight)))
    shortcut = x
    if block.stride > 1:
        shortcut = F.avg_pool2d(shortcut, 2, 2, ceil_mode=True)
    if block.shortcut_conv is not None:
        shortcut = F.conv2d(shortcut, block.shortcut_conv.weight, block.shortcut_conv.bias)
    pad = torch.zeros(x.size(0), y.size(1) - shortcut.size(1), *shortcut.shape[2:])
    return y + torch.cat([shortcut, pad], 1)


@pytest.mark.parametrize('c_in,c_out,stride,use_1x1', [
    (16, 16, 1, False), (16, 32, 2, False), (16, 8, 2, True)])
def test_equals_functional_definition(c_in, c_out, stride, use_1x1):
    torch.manual_seed(0)
    block = randomize_norms(randomize(MinBlock(c_in, c_out, stride=stride, use_1x1=use_1x1)))
    # 9x11: odd, so the strided shortcut pools a partial last window.
    x = torch.randn(2, c_in, 9, 11)
    for mode in ('train', 'eval'):
        getattr(block, mode)()
        # The functional BN updates no running statistics: compare first.
        ref = functional_min_block(block, x)
        out = block(x)
        assert out.shape == (2, c_out, -(-9 // stride), -(-11 // stride))
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_minimum_routes_the_gradient_to_the_smaller_branch():
    """Each branch gets gradient exactly where it is the strict minimum,
    none where it is the larger one, and both depth-wise kernels learn."""
    torch.manual_seed(1)
    block = randomize(MinBlock(8, 8, q=2))
    outs = {}

    def keep(name):
        def hook(module, args, out):
            out.retain_grad()
            outs[name] = out
        return hook

    for name in ('left_dw', 'right_dw'):
        getattr(block, name).register_forward_hook(keep(name))
    out = block(torch.randn(2, 8, 9, 11))
    (out * torch.randn_like(out)).sum().backward()
    left, right = outs['left_dw'], outs['right_dw']
    assert (left.grad[left > right] == 0).all() and (right.grad[right > left] == 0).all()
    assert left.grad[left < right].abs().sum() > 0 and right.grad[right < left].abs().sum() > 0
    assert block.left_dw[0].weight.grad.abs().sum() > 0
    assert block.right_dw[0].weight.grad.abs().sum() > 0


def test_a_one_by_one_map():
    """A stride-2 block on a 2x2 map: the instance norms see one value per
    channel and give 0 (torch refuses them), so the block is ``lower(0) +
    shortcut``; at batch 1 in training ``lower``'s BatchNorm sees one value
    per channel and stops with mmext's one-line error; eval and batch 2 run."""
    torch.manual_seed(2)
    block = randomize(MinBlock(8, 16, stride=2))
    x = torch.randn(2, 8, 2, 2)
    out = block.train()(x)
    zero_path = block.lower(torch.zeros(2, 16 * 2, 1, 1))
    torch.testing.assert_close(out, zero_path + block.shortcut(x))
    msg = run_or_one_value_error(block, x[:1])
    assert msg is not None and 'MinBlock' in msg and 'norm_cfg' in msg
    with torch.no_grad():
        assert block.eval()(x[:1]).shape == (1, 16, 1, 1)


def test_errors():
    with pytest.raises(ValueError, match='use_1x1=True'):
        MinBlock(16, 8)
    with pytest.raises(ValueError, match='odd'):
        MinBlock(8, 8, kernel_size=4)


HOSTS = [dict(type='mmext.ResNet', depth=18), dict(type='mmext.ResNet', depth=50),
         dict(type='mmext.ResNetV1c', depth=18), dict(type='mmext.ResNetV1c', depth=50),
         dict(type='mmext.ResNeXt', depth=50, groups=4, base_width=4)]
MIN_FIRST = dict(block_cfg=dict(type='mmext.MinBlock', q=2), block_cfg_blocks='first')


@pytest.mark.parametrize('host', HOSTS, ids=lambda h: f"{h['type']}-{h['depth']}")
def test_hosts_at_an_odd_size(host):
    """The first block of every stage is a Min block at the replaced block's
    widths and stride, with the host's norm; the other blocks are the
    host's; the stage maps are ceil(H / s) at 97x131."""
    model = MODELS.build(dict(host, base_channels=4, stem_channels=4,
                              norm_cfg=dict(type='GN', num_groups=2), **MIN_FIRST))
    mins = {n: m for n, m in model.named_modules() if isinstance(m, MinBlock)}
    assert sorted(mins) == [f'layer{i}.0' for i in range(1, 5)]
    for i, name in enumerate(sorted(mins)):
        block = mins[name]
        assert block.out_channels == model.out_channels[i]
        assert block.stride == model.strides[i]
        assert isinstance(block.upper.norm, nn.GroupNorm)
        assert not any(isinstance(m, MinBlock) for m in list(getattr(model, f'layer{i + 1}'))[1:])
    x = torch.randn(2, 3, 97, 131)
    with torch.no_grad():
        outs = model.eval()(x)
    for out, c, s in zip(outs, model.out_channels, model.out_strides):
        assert out.shape == (2, c, -(-97 // s), -(-131 // s))


def test_one_image_bf16_large_odd_size():
    """ResNet-50 host, batch 1 at 511x673 under bf16 autocast in training:
    finite maps of ceil(H / s) and gradients to the Min blocks."""
    model = MODELS.build(dict(type='mmext.ResNet', depth=50, base_channels=2, stem_channels=4,
                              **MIN_FIRST)).train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(torch.randn(1, 3, 511, 673))
    for out, s in zip(outs, model.out_strides):
        assert out.shape[-2:] == (-(-511 // s), -(-673 // s))
        assert torch.isfinite(out.float()).all()
    sum(o.float().mean() for o in outs).backward()
    assert model.layer4[0].left_dw[0].weight.grad.abs().sum() > 0
