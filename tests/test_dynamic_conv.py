"""DynamicConv (DY-CNN) and DynamicConvTemperatureHook: kernel bank layout,
reduction to a static conv, per-sample reference, batching, the softmax
temperature and its annealing."""
import types

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mmext.models.layers.dynamic_conv as dynamic_conv_mod
from mmext.engine import DynamicConvTemperatureHook
from mmext.models.layers import DynamicConv, ODConv
from mmext.registry import MODELS


@pytest.mark.parametrize('kernel_size,num_kernels,groups,depthwise,bias', [
    (3, 4, 1, False, True),
    (1, 4, 1, False, True),
    (3, 1, 1, False, True),
    (3, 4, 4, False, False),
    (3, 4, None, True, True),
])
def test_kernel_bank_layout(kernel_size, num_kernels, groups, depthwise, bias):
    """The bank's and the attention's shapes (the conv contract itself runs in
    test_component_contract.py, from DynamicConv.component_examples)."""
    in_ch, out_ch = (16, 16) if depthwise else (16, 24)
    conv = DynamicConv(in_ch, out_ch, kernel_size, groups=in_ch if depthwise else groups,
                       bias=bias, num_kernels=num_kernels)
    assert conv.weight.shape == (num_kernels, out_ch, 1 if depthwise else in_ch // groups,
                                 kernel_size, kernel_size)
    assert (conv.bias is None) == (not bias)
    if num_kernels > 1:
        assert conv.attention.fc1.out_channels == in_ch // 4  # reduction 4
        assert conv.attention.fc2.out_channels == num_kernels


@pytest.mark.parametrize('bias', [True, False])
def test_uniform_attention_is_static_conv_with_mean_kernel(bias):
    torch.manual_seed(0)
    conv = DynamicConv(8, 12, 3, stride=2, padding=2, dilation=2, groups=2, bias=bias)
    conv.kernel_attention = lambda x: x.new_full((x.size(0), 4), 0.25)
    x = torch.randn(3, 8, 11, 13)
    ref = F.conv2d(x, conv.weight.mean(0), conv.bias.mean(0) if bias else None, 2, 2, 2, 2)
    torch.testing.assert_close(conv(x), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('kernel_size,groups,stride', [(3, 1, 1), (3, 2, 2), (1, 1, 1),
                                                       (3, 8, 2)])
def test_matches_per_sample_loop(kernel_size, groups, stride):
    torch.manual_seed(0)
    out_ch = 8 if groups == 8 else 12
    conv = DynamicConv(8, out_ch, kernel_size, stride=stride, padding=kernel_size // 2,
                       groups=groups, temperature=1.0)
    # A wider attention init than the default, so the attention varies visibly
    # across samples (with the tiny hidden width ReLU often silences it).
    for fc in conv.attention.values():
        nn.init.normal_(fc.weight, std=1.0)
    x = torch.randn(4, 8, 10, 9) + torch.randn(4, 8, 1, 1)
    with torch.no_grad():
        att = conv.kernel_attention(x)
        outs, kernels = [], []
        for i in range(4):
            w = sum(att[i, k] * conv.weight[k] for k in range(4))
            b = sum(att[i, k] * conv.bias[k] for k in range(4))
            outs.append(F.conv2d(x[i:i + 1], w, b, stride, kernel_size // 2, 1, groups))
            kernels.append(w)
        out = conv(x)
    torch.testing.assert_close(out, torch.cat(outs), atol=1e-5, rtol=1e-5)
    for i in range(1, 4):
        assert (kernels[0] - kernels[i]).abs().max() > 1e-3, 'samples share one kernel'
    torch.testing.assert_close(att.sum(1), torch.ones(4))


def test_one_conv2d_call_per_forward(monkeypatch):
    calls = []

    def conv2d(*args, **kwargs):
        calls.append(1)
        return F.conv2d(*args, **kwargs)

    # Count only the calls made by dynamic_conv.py (the attention FCs are
    # nn.Conv2d and go through torch's namespace).
    namespace = {k: getattr(F, k) for k in dir(F) if not k.startswith('__')}
    namespace['conv2d'] = conv2d
    monkeypatch.setattr(dynamic_conv_mod, 'F', types.SimpleNamespace(**namespace))
    conv = DynamicConv(8, 12, 3, padding=1)
    out = conv(torch.randn(4, 8, 9, 9))
    assert out.shape == (4, 12, 9, 9)
    assert len(calls) == 1


def _entropy(p):
    return -(p * p.clamp_min(1e-12).log()).sum(1).mean()


def test_temperature_flattens_attention_and_is_saved():
    torch.manual_seed(0)
    conv = DynamicConv(16, 16, 3, padding=1)
    assert conv.temperature == 30.0
    for fc in conv.attention.values():  # logits of a trained attention, not of init
        nn.init.normal_(fc.weight, std=1.0)
    x = torch.randn(4, 16, 8, 8) + torch.randn(4, 16, 1, 1)
    with torch.no_grad():
        flat = conv.kernel_attention(x)
        conv.temperature = 1
        sharp = conv.kernel_attention(x)
    assert _entropy(flat) > _entropy(sharp) + 0.2
    assert _entropy(flat) > 0.99 * torch.log(torch.tensor(4.))  # near uniform at 30

    # The annealed value travels with the checkpoint, so a model built with
    # the default 30 evaluates at the trained temperature.
    fresh = DynamicConv(16, 16, 3, padding=1)
    fresh.load_state_dict(conv.state_dict())
    assert fresh.temperature == 1.0


class _Net(nn.Module):

    def __init__(self):
        super().__init__()
        self.a = DynamicConv(4, 8, 3, padding=1)
        self.b = nn.Sequential(nn.ReLU(), DynamicConv(8, 8, 1))
        self.c = ODConv(8, 8, 3, padding=1)


def _temperatures(net):
    return [net.a.temperature, net.b[1].temperature, net.c.temperature]


def test_hook_anneals_linearly_per_iter():
    net = _Net()
    hook = DynamicConvTemperatureHook(start=30.0, end=1.0, num_steps=100)
    runner = types.SimpleNamespace(model=net, iter=0, epoch=0)
    for it, expected in [(0, 30.0), (50, 15.5), (25, 30 - 29 * 0.25), (100, 1.0), (5000, 1.0)]:
        runner.iter = it
        hook.before_train_iter(runner, batch_idx=it)
        assert _temperatures(net) == pytest.approx([expected] * 3), it
    # epoch hooks do nothing in iteration mode
    runner.iter = 0
    hook.before_train_epoch(runner)
    assert _temperatures(net) == pytest.approx([1.0] * 3)


def test_hook_unwraps_model_and_counts_epochs():
    net = _Net()
    hook = DynamicConvTemperatureHook(start=20.0, end=2.0, by_epoch=True, num_steps=4)
    runner = types.SimpleNamespace(model=nn.DataParallel(net), iter=0, epoch=2)
    hook.before_train(runner)  # e.g. resuming at epoch 2
    assert _temperatures(net) == pytest.approx([11.0] * 3)
    runner.epoch = 4
    hook.before_train_epoch(runner)
    assert _temperatures(net) == pytest.approx([2.0] * 3)
    runner.iter = 0
    hook.before_train_iter(runner, batch_idx=0)  # iteration hooks do nothing by epoch
    assert _temperatures(net) == pytest.approx([2.0] * 3)


def test_hook_default_length_is_ten_epochs():
    net = _Net()
    hook = DynamicConvTemperatureHook()
    runner = types.SimpleNamespace(model=net, iter=0, epoch=0, train_dataloader=range(7))
    hook.before_train(runner)
    assert hook.num_steps == 70
    runner.iter = 35
    hook.before_train_iter(runner, batch_idx=35)
    assert _temperatures(net) == pytest.approx([15.5] * 3)


def test_hook_fractional_length():
    net = _Net()
    hook = DynamicConvTemperatureHook(num_steps=0.1)
    runner = types.SimpleNamespace(model=net, iter=0, epoch=0, max_iters=1000)
    hook.before_train(runner)
    assert hook.num_steps == 100
    assert _temperatures(net) == pytest.approx([30.0] * 3)
    runner.iter = 50
    hook.before_train_iter(runner, batch_idx=50)
    assert _temperatures(net) == pytest.approx([15.5] * 3)


def test_hook_builds_from_mmdet_and_mmseg_configs():
    from mmdet.registry import HOOKS as MMDET_HOOKS
    from mmseg.registry import HOOKS as MMSEG_HOOKS
    for registry in (MMDET_HOOKS, MMSEG_HOOKS):
        hook = registry.build(dict(type='mmext.DynamicConvTemperatureHook', num_steps=10))
        assert isinstance(hook, DynamicConvTemperatureHook)
        assert hook.temperature_at(5) == pytest.approx(15.5)


def test_build_from_conv_cfg_in_resnet():
    torch.manual_seed(0)
    model = MODELS.build(dict(type='mmext.ResNet', depth=18, out_indices=(3, ),
                              block_conv_cfg=dict(type='mmext.DynamicConv')))
    model.init_weights()
    conv = model.layer1[0].conv1
    assert isinstance(conv, DynamicConv) and conv.bias is None  # mmdet passes bias=False
    assert not isinstance(model.conv1, DynamicConv)
    out = model(torch.randn(2, 3, 64, 64))
    assert out[0].shape == (2, 512, 2, 2) and torch.isfinite(out[0]).all()
