"""Differential check of the mmext ResNet hosts against the upstream class each
one replaces (mmext.ResNet / ResNetV1d / ResNeXt: mmdet's; mmext.ResNetV1c:
mmseg's). Built under one seed, a host and its upstream class must agree on the
signature, the attributes ``__init__`` sets, the initial weights, which
parameters train, and the train-mode and eval-mode outputs. Where mmext lifts
an upstream limitation on purpose (plugins / ``dcn`` on BasicBlock, chained
plugins, ``train()`` returning ``self``), tests/test_resnet_host.py covers it.
"""
import inspect

import pytest
import torch
from mmdet.models.backbones import ResNet as DetResNet
from mmdet.models.backbones import ResNetV1d as DetResNetV1d
from mmdet.models.backbones import ResNeXt as DetResNeXt
from mmseg.models.backbones import ResNet as SegResNet
from mmseg.models.backbones import ResNetV1c as SegResNetV1c

from mmext.models.backbones.resnet import ResNet, ResNetV1c, ResNetV1d, ResNeXt
from mmext.models.backbones.sda_resnet import SDAResNet

PAIRS = {
    'ResNet': (DetResNet, ResNet),
    'ResNetV1d': (DetResNetV1d, ResNetV1d),
    'ResNetV1c': (SegResNetV1c, ResNetV1c),
    'ResNeXt': (DetResNeXt, ResNeXt),
}

# (pair, positional args, keyword args): defaults, both stems, narrow widths
# with and without their own stem width, both styles, frozen stages,
# norm_eval both ways, partial out_indices, zero_init_residual both ways;
# depth 18 where the block kind does not matter. Positional tuples follow the
# upstream order (ResNet: depth, in_channels, stem_channels, base_channels;
# ResNeXt: groups, base_width).
CASES = [
    ('ResNet', (18, 3, None, 16), {}),
    ('ResNet', (18, 3, 32, 16), dict(style='caffe', frozen_stages=1, norm_eval=False,
                                      out_indices=(1, 3))),
    ('ResNet', (), dict(depth=50, base_channels=16, style='caffe', frozen_stages=2,
                        out_indices=(0, 2, 3))),
    ('ResNet', (), dict(depth=18, base_channels=16, deep_stem=True, avg_down=True,
                        norm_eval=False, zero_init_residual=False)),
    ('ResNetV1d', (), dict(depth=18, base_channels=16, frozen_stages=2, norm_eval=False)),
    ('ResNetV1d', (), dict(depth=50, base_channels=16, stem_channels=32, out_indices=(3, ))),
    # mmseg's defaults: trained BN statistics, a 64-channel stem at width 16.
    ('ResNetV1c', (), dict(depth=18, base_channels=16)),
    ('ResNetV1c', (), dict(depth=50, base_channels=16, style='caffe', contract_dilation=True,
                           norm_eval=True, frozen_stages=0, zero_init_residual=False)),
    # Dilated stages (PSPNet / DeepLab): contracted first dilation, multi-grid.
    ('ResNetV1c', (), dict(depth=18, base_channels=16, strides=(1, 2, 1, 1),
                           dilations=(1, 1, 2, 4), contract_dilation=True)),
    ('ResNetV1c', (), dict(depth=50, base_channels=16, strides=(1, 2, 1, 1),
                           dilations=(1, 1, 2, 4), contract_dilation=True,
                           multi_grid=(1, 2, 4))),
    ('ResNeXt', (), dict(depth=50, groups=8, base_width=4, base_channels=16)),
    ('ResNeXt', (4, 4), dict(depth=50, base_channels=16, norm_eval=False, style='caffe',
                             frozen_stages=1)),
]


def _build(cls, args, kwargs):
    torch.manual_seed(0)
    net = cls(*args, **kwargs)
    net.init_weights()
    return net


def _public_attrs(module):
    return {k: v for k, v in vars(module).items() if not k.startswith('_')}


def _assert_same_state(ref, host):
    ref_sd, host_sd = ref.state_dict(), host.state_dict()
    assert list(host_sd) == list(ref_sd)
    for key, value in ref_sd.items():
        assert host_sd[key].shape == value.shape, key
        assert torch.equal(host_sd[key], value), key


def _assert_same_outputs(ref, host, x):
    with torch.no_grad():
        ref_out, host_out = ref(x), host(x)
    assert len(host_out) == len(ref_out)
    for a, b in zip(host_out, ref_out):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize('name,args,kwargs', CASES,
                         ids=[f'{c[0]}-{i}' for i, c in enumerate(CASES)])
def test_host_equals_upstream(name, args, kwargs):
    upstream, host_cls = PAIRS[name]
    ref = _build(upstream, args, kwargs)
    host = _build(host_cls, args, kwargs)

    ref_attrs, host_attrs = _public_attrs(ref), _public_attrs(host)
    for key, value in ref_attrs.items():
        assert key in host_attrs, key
        if isinstance(value, type):
            # The block class: the host's own, of the same kind.
            assert host_attrs[key].expansion == value.expansion
        else:
            assert host_attrs[key] == value, key

    _assert_same_state(ref, host)
    assert ([(n, p.requires_grad) for n, p in host.named_parameters()]
            == [(n, p.requires_grad) for n, p in ref.named_parameters()])

    x = torch.randn(2, 3, 33, 45, generator=torch.Generator().manual_seed(1))
    for mode in (True, False):
        ref.train(mode)
        host.train(mode)
        assert [m.training for m in host.modules()] == [m.training for m in ref.modules()]
        _assert_same_outputs(ref, host, x)
    # The train-mode pass updated the same running statistics.
    _assert_same_state(ref, host)


def _params(cls):
    return [(p.name, p.kind, p.default)
            for p in list(inspect.signature(cls.__init__).parameters.values())[1:]]


@pytest.mark.parametrize('upstream,host', [(DetResNet, ResNet), (DetResNeXt, ResNeXt),
                                           (DetResNetV1d, ResNetV1d)])
def test_signature_is_upstream_then_keyword_only(upstream, host):
    """Upstream's parameters in upstream's order with upstream's defaults;
    whatever mmext adds is keyword-only."""
    up, own = _params(upstream), _params(host)
    assert own[:len(up)] == up
    assert all(kind is inspect.Parameter.KEYWORD_ONLY for _, kind, _ in own[len(up):])


def test_resnet_v1c_takes_mmseg_keywords_and_defaults():
    """mmseg's ResNetV1c takes mmseg ResNet's keywords (no positionals) and
    mmseg's defaults, which differ from mmdet's in norm_eval and
    stem_channels; the host's effective default for each is mmseg's."""
    own = {n: d for n, kind, d in _params(ResNetV1c) if kind is inspect.Parameter.KEYWORD_ONLY}
    assert all(kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD)
               for _, kind, _ in _params(ResNetV1c))
    inherited = {n: d for n, _, d in _params(ResNet)}
    for name, _, default in _params(SegResNet):
        if name in ('depth', 'deep_stem', 'avg_down'):
            continue
        assert own.get(name, inherited.get(name, 'missing')) == default, name
    assert own['norm_eval'] is False and own['stem_channels'] == 64
    with pytest.raises(TypeError):
        ResNetV1c(18)


def test_sda_resnet_takes_the_host_signature():
    """SDAResNet is the mmext.ResNet host with SDA stages: mmdet ResNet's
    positional arguments and defaults, its own arguments keyword-only."""
    sda = SDAResNet(18, 4, 16, 8)
    ref = ResNet(18, 4, 16, 8)
    assert sda.conv1.in_channels == 4 and sda.conv1.out_channels == 16
    assert sda.layer1[0].conv1.out_channels == 8
    ref_attrs = _public_attrs(ref)
    for key, value in _public_attrs(sda).items():
        if key in ref_attrs and not isinstance(value, type):
            assert ref_attrs[key] == value, key
    assert sda.norm_eval is True
    own = inspect.signature(SDAResNet).parameters
    assert all(own[name].kind is inspect.Parameter.KEYWORD_ONLY
               for name in ('groups', 'base_width', 'reduction', 'min_channels'))
