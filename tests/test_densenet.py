"""DenseNet: exact sizes against torchvision, MACs, the same maps as
torchvision's and timm's DenseNet-121 from the same weights, what differs at
odd sizes, the memory-efficient mode, and both official key styles (the
shared backbone contract runs in test_backbone_contract.py: shapes at odd
sizes, gradients with and without ``with_cp``, bf16, frozen stages, ...)."""
import functools
import math
import re

import pytest
import timm
import torch
import torchvision
from backbone_checks import check_official_checkpoint, count_params, same_names_as
from design_checks import randomize, randomize_norms
from torch.utils.flop_counter import FlopCounterMode

from mmext.models.backbones.densenet import DenseNet

# Measured on torchvision 0.29.1 (torchvision.models.densenet{arch}(), random
# init): parameters of `.features` and of the whole classifier. 121's are the
# catalog's (B4) 6,953,856 / 7,978,856.
TORCHVISION_PARAMS = {'121': (6_953_856, 7_978_856), '169': (12_484_480, 14_149_480),
                      '201': (18_092_928, 20_013_928), '161': (26_472_000, 28_681_000)}
TINY = dict(growth_rate=8, depths=[1, 2, 1, 1], init_channels=16)


def classifier_params(model):
    return model.out_channels[-1] * 1000 + 1000


@pytest.mark.parametrize('arch', sorted(TORCHVISION_PARAMS))
def test_parameter_counts_are_torchvisions(arch):
    model = DenseNet(arch=arch)
    features, full = TORCHVISION_PARAMS[arch]
    assert count_params(model) == features
    assert count_params(model) + classifier_params(model) == full


def test_densenet121_macs():
    """2.834G MACs at 224 (catalog B4: torchvision's full model under
    ``torch.utils.flop_counter``, FLOPs / 2; the classifier adds 1.024M); the
    paper prints 2.88G."""
    model = DenseNet(arch='121').eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    macs = counter.get_total_flops() // 2 + model.out_channels[-1] * 1000
    assert abs(macs / 2.834e9 - 1) < 0.001, macs


def test_arch_names_and_custom_dict():
    assert DenseNet(arch=161).depths == [6, 12, 36, 24]
    assert DenseNet(arch='169').out_channels == (256, 512, 1280, 1664)
    assert DenseNet(arch='201').out_channels == (256, 512, 1792, 1920)
    assert DenseNet(arch='161').out_channels == (384, 768, 2112, 2208)
    with pytest.raises(ValueError, match="'121'"):
        DenseNet(arch='264')
    with pytest.raises(ValueError, match='init_channels'):
        DenseNet(arch=dict(growth_rate=8, depths=[1, 1, 1, 1]))


def test_benchmark_references_by_arch():
    from mmext.analysis.benchmark import listed_references
    assert listed_references(dict(type='mmext.DenseNet', arch=161)) == (
        'timm:densenet161', 'mmpretrain:DenseNet:161')
    assert listed_references(dict(type='mmext.DenseNet'))[0] == 'timm:densenet121'
    assert listed_references(dict(type='mmext.DenseNet', arch=dict(TINY))) == ()



@pytest.fixture(scope='module')
def torchvision_121():
    """torchvision's DenseNet-121 with non-trivial norms, and ours with its
    weights, key for key."""
    tv = randomize_norms(torchvision.models.densenet121()).eval()
    ours = DenseNet(arch='121').eval()
    weights = {k: v for k, v in tv.state_dict().items() if not k.startswith('classifier.')}
    assert set(weights) == set(ours.state_dict())
    ours.load_state_dict(weights)
    return tv, ours


def _torchvision_maps(tv, x):
    """torchvision's dense-block 1-3 outputs and ReLU(norm5(...)), the
    classifier's input before pooling."""
    taps = {}
    hooks = [getattr(tv.features, f'denseblock{i}').register_forward_hook(
        lambda m, args, out, i=i: taps.__setitem__(i, out)) for i in (1, 2, 3)]
    try:
        last = torch.relu(tv.features(x))
    finally:
        for h in hooks:
            h.remove()
    return [taps[1], taps[2], taps[3], last]


def test_same_maps_as_torchvision(torchvision_121):
    tv, ours = torchvision_121
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected, outs = _torchvision_maps(tv, x), ours(x)
    assert [tuple(o.shape[1:]) for o in outs] == [(256, 16, 24), (512, 8, 12), (1024, 4, 6),
                                                  (1024, 2, 3)]
    for out, exp in zip(outs, expected):
        torch.testing.assert_close(out, exp, rtol=1e-5, atol=1e-5)


def test_same_maps_as_timm_features_only(torchvision_121):
    """timm's ``features_only`` indices 1..4 are the same four taps; its
    flattened modules are ours with ``features.`` -> ``features_``."""
    _, ours = torchvision_121
    ref = timm.create_model('densenet121', features_only=True, out_indices=(1, 2, 3, 4))
    ref.load_state_dict({k.replace('features.', 'features_', 1): v
                         for k, v in ours.state_dict().items()})
    ref.eval()
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        for out, exp in zip(ours(x), ref(x)):
            torch.testing.assert_close(out, exp, rtol=1e-5, atol=1e-5)


def test_odd_sizes_against_torchvision():
    """torchvision's 2x2 average pools floor (97x131 -> 12x16 at stride 8);
    ours round up (13x17) by averaging the last row / column alone. The
    stride-4 map is torchvision's everywhere; deeper maps equal it away from
    the bottom / right border that the extra row and column reach (one
    pixel per 3x3 conv of the block)."""
    ours = randomize(DenseNet(arch=dict(TINY))).eval()
    tv = torchvision.models.DenseNet(growth_rate=8, block_config=(1, 2, 1, 1),
                                     num_init_features=16).eval()
    missing, unexpected = tv.load_state_dict(ours.state_dict(), strict=False)
    assert sorted(missing) == ['classifier.bias', 'classifier.weight'] and not unexpected
    h, w = 97, 131
    x = torch.randn(1, 3, h, w)
    with torch.no_grad():
        outs, expected = ours(x), _torchvision_maps(tv, x)
    for out, s in zip(outs, ours.out_strides):
        assert out.shape[-2:] == (math.ceil(h / s), math.ceil(w / s))
    assert [e.shape[-2:] for e in expected[1:]] == [(12, 16), (6, 8), (3, 4)]
    torch.testing.assert_close(outs[0], expected[0])
    # Block 2 has two 3x3 convs: two border rows / columns of the common part differ.
    torch.testing.assert_close(outs[1][..., :10, :14], expected[1][..., :10, :14])
    assert not torch.allclose(outs[1][..., :12, :16], expected[1])


def test_large_odd_input_tiny_width():
    model = DenseNet(arch=dict(growth_rate=4, depths=[1, 1, 1, 1], init_channels=8)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 511, 673))
    assert [o.shape[-2:] for o in outs] == [(128, 169), (64, 85), (32, 43), (16, 22)]


def _saved_bytes(model, x):
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(saved)


def test_with_cp_stores_less():
    """torchvision's memory-efficient mode: the concatenation and ``norm1``
    of every dense layer are not kept for the backward pass, about half of
    DenseNet-121's stored activations (that outputs and gradients are the
    same is the shared contract's with_cp check)."""
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    plain = _saved_bytes(DenseNet(arch='121').train(), x)
    assert _saved_bytes(DenseNet(arch='121', with_cp=True).train(), x) < 0.6 * plain


def test_drop_rate_is_training_only():
    model = DenseNet(arch=dict(TINY), drop_rate=0.5)
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        assert not torch.allclose(model.train()(x)[-1], model(x)[-1])
        model.eval()
        torch.testing.assert_close(model(x)[-1], model(x)[-1])


# The documented torchvision / timm layout (../shared/catalog_remaining.md, B4).
OFFICIAL_KEY = (r'^features\.(conv0\.|norm0\.|norm5\.|transition[1-3]\.(norm|conv)\.'
                r'|denseblock[1-4]\.denselayer\d+\.(norm1|conv1|norm2|conv2)\.)')


def to_old_torchvision(state_dict):
    """The key style of torchvision's released files: ``denselayerN.norm.1``
    .. ``conv.2`` (torchvision removes the dot on load)."""
    out = {}
    for k, v in same_names_as(OFFICIAL_KEY)(state_dict).items():
        out[re.sub(r'(denselayer\d+\.(?:norm|conv))([12])\.', r'\1.\2.', k)] = v
    return out


def classifier(channels):
    return {'classifier.weight': torch.zeros(1000, channels), 'classifier.bias': torch.zeros(1000)}


def test_official_checkpoint_torchvision_timm_keys(tmp_path):
    check_official_checkpoint(functools.partial(DenseNet, arch=dict(TINY)),
                              same_names_as(OFFICIAL_KEY), tmp_path, 'DenseNet', None,
                              classifier=classifier(19))


def test_official_checkpoint_old_torchvision_keys(tmp_path):
    """The key style of torchvision's released ``densenet121-a639ec97.pth``,
    written here without BN's ``num_batches_tracked`` (as files saved before
    PyTorch had it)."""
    assert 'features.denseblock1.denselayer1.norm.1.running_var' in to_old_torchvision(
        DenseNet(arch=dict(TINY)).state_dict())
    check_official_checkpoint(functools.partial(DenseNet, arch=dict(TINY)), to_old_torchvision,
                              tmp_path, 'DenseNet', None, classifier=classifier(19),
                              expected_missing=(r'\.num_batches_tracked$', ))
