"""The checks every registered mmext component passes, found by discovery.

Every class in mmext's ``MODELS`` registry that is not a backbone (a subclass
of mmext's ``DenseBackbone`` or of mmdet's ``ResNet``, whose checks are in
``tests/backbone_checks.py``) or a loss (``mmext/models/losses/``, checked in
their own tests) is a component: an attention plugin (or DropBlock), a
convolution, a block, a stem or a backbone's mixer. Each declares in its own file
``component_examples`` (:class:`~mmext.models.layers.protocols.ComponentExample`)
and ``host_norm_args``; this file builds every example and runs the shared
checks on it. A registered component that declares nothing fails here.

The three tools find a component by what its class declares, never by its
name: the last test defines a module only here and checks that the attention
maps, the FLOP count and the temperature hook all pick it up.
"""
import pytest
import torch
import torch.nn as nn
from design_checks import (ODD_SIZE, assert_all_grads, check_conv_contract,
                           check_one_image_per_device, randomize)
from mmcv.cnn import build_plugin_layer
from mmdet.models.backbones import ResNet as MMDetResNet
from mmseg.models.backbones import ResNet as MMSegResNet

import mmext.models  # noqa: F401  (fills the registry)
from mmext.analysis.attention_maps import collect_attention, supported_designs
from mmext.analysis.flops import count_flops
from mmext.engine import DynamicConvTemperatureHook
from mmext.models.backbones.base_backbone import DenseBackbone
from mmext.models.layers.protocols import AttentionMap, AttentionMaps, ComponentExample
from mmext.registry import MODELS


def is_backbone(cls):
    # The same rule as tests/test_backbone_contract.py's BACKBONE_BASES.
    return issubclass(cls, (DenseBackbone, MMDetResNet, MMSegResNet))


def is_loss(cls):
    # Losses take predictions and targets, not feature maps: they live in
    # mmext/models/losses/ and are checked in their own tests.
    return cls.__module__.startswith('mmext.models.losses')


def is_slimmable_network_part(cls):
    # MutualNet's slimmable neck / decode heads (mmext/models/layers/slimmable.py)
    # and MobileNetV2 host read or make a whole network's feature maps, not
    # one unit's input: checked in tests/test_slimmable.py.
    return cls.__name__.startswith('Slimmable')


COMPONENTS = {name: cls for name, cls in sorted(MODELS.module_dict.items())
              if not is_backbone(cls) and not is_loss(cls) and not is_slimmable_network_part(cls)}


def examples_of(cls):
    """The class's ``component_examples``; AssertionError naming what is
    missing when it declares none (or no ``host_norm_args``)."""
    # Its own declaration, as for backbones: a subclass with another
    # signature must not run its parent's examples.
    examples = cls.__dict__.get('component_examples')
    assert examples, (f'{cls.__name__} is registered in mmext MODELS but declares no '
                      'component_examples in its class body (see '
                      'mmext/models/layers/protocols.py)')
    assert all(isinstance(e, ComponentExample) for e in examples), examples
    assert isinstance(getattr(cls, 'host_norm_args', None), tuple), \
        f'{cls.__name__} declares no host_norm_args tuple (mmext/models/layers/unit_norm.py)'
    return examples


def build(cls, example, stride=1, **overrides):
    kwargs = dict(example.kwargs, **overrides)
    if example.kind == 'conv':
        k = example.kernel_size
        return cls(example.in_channels, example.out_channels, k, stride=stride,
                   padding=k // 2, **kwargs)
    if example.kind == 'block':
        return cls(example.in_channels, example.out_channels, stride=stride, dilation=1,
                   **kwargs)
    if example.kind == 'stem':
        return cls(example.in_channels, example.out_channels, **kwargs)
    return cls(example.in_channels, **kwargs)


def _expected_shape(example, x, stride):
    """What a block (at ``stride``), a stem (stride 4) or a shape-keeping
    plugin / unit gives for ``x``."""
    if example.kind == 'stem':
        stride = 4
    elif example.kind != 'block':
        return x.shape
    n, _, h, w = x.shape
    return (n, example.out_channels, -(-h // stride), -(-w // stride))


def test_discovery_finds_the_components_and_skips_backbones():
    # Not vacuous: today's components are found, and a backbone is not one.
    assert {'SE', 'ECA', 'CBAM', 'DynamicConv', 'ODConv', 'SKConv', 'DCDC', 'TAdaConv', 'LKA',
            'MultiOrderGatedAggregation', 'GnConv'} <= set(COMPONENTS)
    assert not {'ResNet', 'VAN', 'SDAResNet', 'MogaNet', 'LabelSmoothingFocalLoss'} \
        & set(COMPONENTS)

    class Undeclared(nn.Module):
        pass

    with pytest.raises(AssertionError, match='declares no component_examples'):
        examples_of(Undeclared)


@pytest.mark.parametrize('name', list(COMPONENTS))
def test_shape_gradients_and_bf16(name):
    """Output shape at an odd size (convs: as ``nn.Conv2d(in, out, k, s,
    k // 2)`` at stride 1 and 2; blocks ``ceil(H / s)`` at stride 1 and 2;
    stems ``ceil(H / 4)``), a gradient to every parameter, no NaN under bf16
    autocast."""
    cls = COMPONENTS[name]
    for i, example in enumerate(examples_of(cls)):
        torch.manual_seed(i)
        if example.kind == 'conv':
            check_conv_contract(
                lambda c_in, c_out, k, s, p, ex=example: randomize(build(cls, ex, s)),
                in_channels=example.in_channels, out_channels=example.out_channels,
                kernel_size=example.kernel_size)
            continue
        for stride in ((1, 2) if example.kind == 'block' else (1, )):
            module = randomize(build(cls, example, stride))
            x = torch.randn(2, example.in_channels, *ODD_SIZE)
            out = module(x)
            assert out.shape == _expected_shape(example, x, stride), (example, stride, out.shape)
            assert_all_grads(module, out)
            module.eval()
            with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
                assert not torch.isnan(module(x)).any(), example
        if example.kind == 'plugin':
            # What a ResNet ``plugins=`` entry builds.
            _, plugin = build_plugin_layer(dict(type=f'mmext.{name}', **example.kwargs),
                                           in_channels=example.in_channels)
            assert type(plugin) is cls


@pytest.mark.parametrize('name', list(COMPONENTS))
def test_one_image_per_device(name):
    """Batch 1 on a 9x9 map in training either runs or stops with mmext's
    one-line error, as the example declares; batch 2 runs; each of the
    ``host_norm_args`` set to None or GN(1 group) trains at batch 1."""
    cls = COMPONENTS[name]
    for i, example in enumerate(examples_of(cls)):
        torch.manual_seed(i)
        x = torch.randn(1, example.in_channels, 9, 9)
        check_one_image_per_device(lambda ex=example, **kw: build(cls, ex, **kw), x,
                                   cls.host_norm_args, example.one_image_raises)


class ToyGate(nn.Module):
    """A design defined only here: ``x * sigmoid(conv(x) / temperature)``,
    declaring its map, its hidden FLOPs and its temperature."""

    attention_maps = AttentionMaps('ToyGate', 'spatial gate', (
        AttentionMap('conv', 'spatial', 'gate', transform='gate_of'), ))
    annealed_temperature = True

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 3, padding=1)
        self.temperature = 1.0

    def gate_of(self, logits):
        return torch.sigmoid(logits / self.temperature)

    def extra_flops(self, inputs, output):
        # One multiply per element of the gated input.
        return inputs[0].numel()

    def forward(self, x):
        return x * self.gate_of(self.conv(x))


class Undeclared(nn.Module):
    """Has a ``temperature`` too (as e.g. a positional encoding may) but
    declares nothing: no tool may touch it."""

    def __init__(self):
        super().__init__()
        self.temperature = 10000.0

    def forward(self, x):
        return x


def test_a_new_design_is_found_by_every_tool():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 1), ToyGate(8), Undeclared())
    x = torch.randn(2, 3, 7, 9)

    (record, ) = collect_attention(model, x)
    assert (record.name, record.design, record.kind, record.label) == \
        ('1', 'ToyGate', 'spatial', 'gate')
    torch.testing.assert_close(record.tensor, model[1].gate_of(model[1].conv(model[0](x))))
    # Not registered, so not in the registry's list of designs; listed ones are.
    assert not any(d.startswith('ToyGate') for d in supported_designs())
    assert any(d.startswith('CBAM') for d in supported_designs())

    count = count_flops(model.eval(), x)
    assert count.by_operator['dynamic_kernel'] == 2 * 8 * 7 * 9
    assert count.of('1') == 2 * 7 * 9 * 8 * 9 + 2 * 8 * 7 * 9  # 3x3 conv 8 -> 1, the gating
    assert count.total == 2 * 7 * 9 * 3 * 8 + count.of('1')

    hook = DynamicConvTemperatureHook(start=5.0, end=1.0, num_steps=4)
    hook.set_temperature(model, hook.temperature_at(2))
    assert model[1].temperature == 3.0
    assert model[2].temperature == 10000.0
