"""HorNet and its mixer GnConv: published parameter counts and FLOPs, maps
smaller and larger than the stored global filters, official checkpoint
layout and filter resampling, hand references of GnConv and the
GlobalLocalFilter, and GnConv standalone / as a ResNet plugin."""
import functools
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from backbone_checks import check_official_checkpoint, count_params, same_names_as
from design_checks import ODD_SIZE, randomize
from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import get_shape
from mmengine.registry import DefaultScope

from mmext.analysis.flops import count_flops
from mmext.models.backbones.hornet import GlobalLocalFilter, GnConv, HorNet, HorNetBlock
from mmext.registry import MODELS

# Published (ImageNet-1k classification form, 224^2). Rounded figures: Rao et
# al., HorNet (NeurIPS 2022) / official README (raoyongming/HorNet); exact
# figures: mmpretrain configs/hornet/README.md (weights converted from the
# official repo, so the same architecture). The L rows are mmpretrain's exact
# counts with a 1000-class head; the official README's 209M / 211M for its
# ImageNet-22k models are not comparable (head / counting unstated).
PUBLISHED = {  # arch: (rounded params M, exact params M, GFLOPs rounded, GFLOPs mmpretrain)
    'tiny': (22, 22.41, 4.0, 3.98),
    'tiny-gf': (23, 22.99, 3.9, 3.90),
    'small': (50, 49.53, 8.8, 8.83),
    'small-gf': (50, 50.40, 8.7, 8.71),
    'base': (87, 87.26, 15.6, 15.59),
    'base-gf': (88, 88.42, 15.5, 15.42),
    'large': (None, 194.54, None, None),
    'large-gf': (None, 196.29, None, None),
}
TINY_CHANNELS = (64, 128, 256, 512)


def classification_params(model):
    # The official classifier: GAP, final LayerNorm(C) (``norm``), Linear(C, 1000).
    # The dense-only output norms norm0..3 are not part of the published form.
    c = model.out_channels[-1]
    dense_norms = sum(p.numel() for n, p in model.named_parameters()
                      if re.match(r'norm[0-3]\.', n))
    return count_params(model) - dense_norms + 2 * c + c * 1000 + 1000


@pytest.mark.parametrize('arch', list(PUBLISHED))
def test_published_param_counts(arch):
    rounded, exact, _, _ = PUBLISHED[arch]
    total = classification_params(HorNet(arch=arch))
    assert abs(total - exact * 1e6) / (exact * 1e6) < 0.01, (arch, total)
    if rounded is not None:
        assert round(total / 1e6) == rounded, (arch, total)


def _official_fft_flops(inputs, outputs):
    # The official calc_flops.py handle for aten::fft_rfft2 / fft_irfft2:
    # N * C * ceil(log2 N) with (B, H, W, C) read off the (NCHW!) input shape.
    _, h, w, c = get_shape(inputs[0])
    n = h * w
    return int(n * c * np.ceil(np.log2(n)))


@pytest.mark.parametrize('arch', [a for a in PUBLISHED if PUBLISHED[a][2] is not None])
def test_published_flops(arch):
    """Within 5% of the published FLOPs, counted by mmext's counter (the
    GF variants' FFTs by mmext's handle, ``n * ceil(log2 n)`` per transformed
    map). At 224 the FFTs are only ~0.02 GFLOPs (the filtered maps are 14x14
    and 7x7); the official count (its own handle, above) adds about as much
    to mmengine's bare figure."""
    model = HorNet(arch=arch).eval()
    c = model.out_channels[-1]
    # Classifier: final LayerNorm over C (5 per element, as mmengine counts
    # norms) and Linear(C, 1000). The dense output norms are not run for the
    # classification form: count the backbone with the last-stage output only
    # and remove that norm's count.
    x = torch.randn(1, 3, 224, 224)
    count = count_flops(model, x)
    body = count.total - sum(count.of(f'norm{i}') for i in range(4))
    flops = body + 5 * c + c * 1000
    published = PUBLISHED[arch][3] * 1e9
    assert abs(flops - published) / published < 0.05, (arch, flops)
    rounded = PUBLISHED[arch][2] * 1e9
    assert abs(flops - rounded) / rounded < 0.05, (arch, flops)
    fft = sum(v for op, v in count.by_operator.items() if op.startswith('fft'))
    if not arch.endswith('-gf'):
        assert fft == 0
        return
    assert 0 < fft < 0.01 * published, fft
    assert not [op for op in count.uncounted_ops if 'fft' in op]
    bare = FlopAnalyzer(model, x)
    bare.unsupported_ops_warnings(False)
    bare.uncalled_modules_warnings(False)
    assert count.total - bare.total() == fft
    assert set(bare.unsupported_ops()) >= {'aten::fft_rfft2', 'aten::fft_irfft2'}
    official = FlopAnalyzer(model, x).set_op_handle(
        **{'aten::fft_rfft2': _official_fft_flops, 'aten::fft_irfft2': _official_fft_flops})
    official.unsupported_ops_warnings(False)
    official.uncalled_modules_warnings(False)
    assert 0 < official.total() - bare.total() < 0.01 * published


def test_arch_aliases_and_errors():
    for alias, name in (('t', 'tiny'), ('tiny_7x7', 'tiny'), ('T-GF', 'tiny-gf'),
                        ('small_gf', 'small-gf'), ('b', 'base'), ('l-gf', 'large-gf')):
        assert HorNet.resolve_arch(alias) == HorNet.arch_settings[name]
    with pytest.raises(ValueError, match='tiny-gf'):
        HorNet(arch='huge')
    with pytest.raises(ValueError, match='orders'):
        HorNet(arch=dict(embed_dims=[8, 16, 32, 64], depths=[1, 1, 1, 1]))
    with pytest.raises(ValueError, match='gf_sizes'):
        HorNet(arch='tiny', gf_sizes=[(4, 3)])
    custom = HorNet(arch=dict(embed_dims=[8, 16, 32, 64], depths=[1, 1, 2, 1],
                              orders=[1, 2, 3, 3], gf_sizes=[None, (6, 4), None, None]))
    assert isinstance(custom.stages[1][0].gnconv.dwconv, GlobalLocalFilter)
    assert custom.stages[2][1].gnconv.dims == [8, 16, 32]


def test_variant_structure():
    """Orders 2..5 per stage, DW 7x7 with bias, GF on stages 3-4 only with the
    official 14x8 / 7x4 stored filters, layer scale 1e-6, MLP ratio 4."""
    model = HorNet(arch='tiny-gf')
    for i, order in enumerate((2, 3, 4, 5)):
        gn = model.stages[i][0].gnconv
        assert gn.order == order and gn.dims[0] == TINY_CHANNELS[i] // 2**(order - 1)
        assert math.isclose(gn.scale, 1 / 3)
    dw = model.stages[1][0].gnconv.dwconv
    assert dw.kernel_size == (7, 7) and dw.bias is not None and dw.groups == dw.in_channels
    gf3, gf4 = model.stages[2][0].gnconv.dwconv, model.stages[3][0].gnconv.dwconv
    assert tuple(gf3.complex_weight.shape) == (240, 14, 8, 2)  # sum(32, 64, 128, 256) / 2
    assert tuple(gf4.complex_weight.shape) == (496, 7, 4, 2)
    assert gf3.dw.kernel_size == (3, 3) and gf3.dw.bias is None
    block = model.stages[0][0]
    assert torch.all(block.gamma1 == 1e-6) and torch.all(block.gamma2 == 1e-6)
    assert block.pwconv1.out_features == 4 * 64
    assert not isinstance(HorNet(arch='tiny').stages[3][0].gnconv.dwconv, GlobalLocalFilter)


def test_tiny_maps_and_filter_sizes():
    """Maps smaller than, equal to and larger than the stored filters; a 1x1
    last stage; the segmentation-config filters."""
    model = HorNet(arch='tiny-gf', gf_sizes=[None, None, (24, 13), (12, 7)]).eval()
    for size in ((1, 1), (33, 47), (224, 224), (300, 190)):
        with torch.no_grad():
            outs = model(torch.randn(1, 3, *size))
        assert [tuple(o.shape[-2:]) for o in outs] == [
            (math.ceil(size[0] / s), math.ceil(size[1] / s)) for s in (4, 8, 16, 32)]
        assert all(torch.isfinite(o).all() for o in outs)


def test_registry_builds_it():
    model = MODELS.build(dict(type='mmext.HorNet', arch='tiny-gf', out_indices=(3, )))
    assert isinstance(model, HorNet)
    assert model(torch.randn(1, 3, 33, 35))[0].shape == (1, 512, 2, 2)


def test_official_init():
    """Official init: trunc normal std .02 for convs / linears (bias 0), the
    global filters trunc normal std .02."""
    torch.manual_seed(0)
    model = HorNet(arch='tiny-gf')
    model.init_weights()
    block = model.stages[2][0]
    for layer in (block.gnconv.proj_in, block.pwconv1, model.downsample_layers[1][1]):
        assert abs(layer.weight.std().item() / 0.02 - 1) < 0.1
        assert torch.all(layer.bias == 0)
    cw = block.gnconv.dwconv.complex_weight
    assert abs(cw.std().item() / 0.02 - 1) < 0.1 and cw.abs().max() <= 2


# --------------------------------------------------------------------------
# Official checkpoint: documented layout (../shared/checkpoint_layouts.md):
# downsample_layers.{i}.{0,1}, stages.{i}.{j}.{norm1, gnconv.{proj_in, dwconv
# (7x7) | dwconv.{dw, complex_weight, pre_norm, post_norm}, pws.{k}, proj_out},
# norm2, pwconv1, pwconv2, gamma1, gamma2}; classifier norm.*, head.*. The
# dense-only norm0..3 are absent. mmext keeps these names.
to_official = same_names_as(
    r'^(downsample_layers\.[0-3]\.[01]\.(weight|bias)$|'
    r'stages\.[0-3]\.\d+\.(norm[12]\.(weight|bias)$|gamma[12]$|pwconv[12]\.(weight|bias)$|'
    r'gnconv\.((proj_in|proj_out|pws\.\d+)\.(weight|bias)$|dwconv\.(weight|bias)$|'
    r'dwconv\.(dw\.weight|complex_weight|(pre_norm|post_norm)\.(weight|bias))$)))')


def _classifier(c):
    return {'norm.weight': torch.ones(c), 'norm.bias': torch.zeros(c),
            'head.weight': torch.randn(1000, c), 'head.bias': torch.zeros(1000)}


@pytest.mark.parametrize('arch', ['tiny-gf', 'tiny'])
def test_official_checkpoint(tmp_path, arch):
    check_official_checkpoint(
        functools.partial(HorNet, arch=arch), to_official, tmp_path, 'HorNet', arch,
        classifier=_classifier(512), expected_missing=HorNet.expected_missing)


def test_checkpoint_filters_are_resampled(tmp_path):
    """A 224 checkpoint (14x8 / 7x4 filters) into the 384 filters of the
    official segmentation configs: bilinear, aligned corners, as the official
    loader; nothing missing but the dense norms."""
    src = HorNet(arch='tiny-gf')
    src.init_weights()
    official = to_official({k: v for k, v in src.state_dict().items()
                            if not re.match(r'norm[0-3]\.', k)})
    official.update(_classifier(512))
    torch.save({'model': official}, tmp_path / 'hornet_tiny_gf.pth')
    dst = HorNet(arch='tiny-gf', gf_sizes=[None, None, (24, 13), (12, 7)])
    report = dst.load_pretrained(str(tmp_path / 'hornet_tiny_gf.pth'))
    assert report['missing'] == [] and report['unexpected'] == []
    assert len(report['expected_missing']) == 8
    key = 'stages.2.5.gnconv.dwconv.complex_weight'
    expected = F.interpolate(official[key].permute(3, 0, 1, 2), size=(24, 13), mode='bilinear',
                             align_corners=True).permute(1, 2, 3, 0)
    torch.testing.assert_close(dst.state_dict()[key], expected)
    assert dst.state_dict()['stages.3.1.gnconv.dwconv.complex_weight'].shape == (496, 12, 7, 2)


# --------------------------------------------------------------------------
# The mixers against hand references.
def _conv(t, m, **kw):
    return F.conv2d(t, m.weight, m.bias, **kw)


def test_gnconv_matches_hand_reference():
    c = 16  # order 3: p0 4 channels, gates 4 / 8 / 16
    gn = randomize(GnConv(c, order=3)).eval()
    x = torch.randn(2, c, 9, 11)
    y = _conv(x, gn.proj_in)
    p0, q = y[:, :4], y[:, 4:]
    q = _conv(q, gn.dwconv, padding=3, groups=28) / 3
    p1 = p0 * q[:, :4]
    p2 = _conv(p1, gn.pws[0]) * q[:, 4:12]
    p3 = _conv(p2, gn.pws[1]) * q[:, 12:]
    with torch.no_grad():
        torch.testing.assert_close(gn(x), _conv(p3, gn.proj_out))
    assert gn.dims == [4, 8, 16] and gn.proj_in.out_channels == 32
    assert [tuple(pw.weight.shape[:2]) for pw in gn.pws] == [(8, 4), (16, 8)]


def _layer_norm_2d(x, m):
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    return m.weight[:, None, None] * (x - u) / torch.sqrt(s + 1e-6) + m.bias[:, None, None]


@pytest.mark.parametrize('size', [(14, 14), (9, 20)])
def test_global_local_filter_matches_hand_reference(size):
    """Channels-first LN, DW 3x3 on the first half, ortho rfft2 * W (resampled
    to the runtime spectrum) / irfft2 on the second half, halves interleaved
    channel by channel, LN."""
    gf = randomize(GlobalLocalFilter(12, filter_size=(14, 8))).eval()
    x = torch.randn(2, 12, *size)
    h, w = size
    y = _layer_norm_2d(x, gf.pre_norm)
    local = F.conv2d(y[:, :6], gf.dw.weight, padding=1, groups=6)
    weight = gf.complex_weight
    if (h, w // 2 + 1) != (14, 8):
        weight = F.interpolate(weight.permute(3, 0, 1, 2), size=(h, w // 2 + 1),
                               mode='bilinear', align_corners=True).permute(1, 2, 3, 0)
    spec = np.fft.rfft2(y[:, 6:].detach().numpy(), norm='ortho')
    spec = spec * (weight[..., 0] + 1j * weight[..., 1]).detach().numpy()
    glob = torch.from_numpy(np.fft.irfft2(spec, s=size, norm='ortho')).float()
    mixed = torch.empty_like(x)
    mixed[:, 0::2], mixed[:, 1::2] = local, glob
    with torch.no_grad():
        torch.testing.assert_close(gf(x), _layer_norm_2d(mixed, gf.post_norm), atol=1e-4,
                                   rtol=1e-4)


def test_global_filter_is_global_and_7x7_is_local():
    """A change at one pixel reaches a pixel 10 away through the global
    filter, never through the DW 7x7 of the other variants."""
    x = torch.randn(1, 24, 16, 16)
    x2 = x.clone()
    x2[:, 3, 0, 0] += 5  # one channel: a change of all channels alike is normed away
    gf = randomize(GlobalLocalFilter(24)).eval()
    with torch.no_grad():
        assert (gf(x2) - gf(x))[..., 10, 10].abs().max() > 1e-4
    for global_filter in (True, False):
        gn = randomize(GnConv(24, order=2, global_filter=global_filter)).eval()
        with torch.no_grad():
            d = (gn(x2) - gn(x))[..., 10, 10].abs().max()
        # Through GnConv's products the far effect is small, but FFT round-off
        # is far smaller (~1e-7).
        assert (d > 1e-5) if global_filter else (d == 0), (global_filter, d)


def test_block_is_layer_scaled_residual():
    block = randomize(HorNetBlock(16, order=3)).eval()
    x = torch.randn(1, 16, 6, 7)
    with torch.no_grad():
        mid = x + block.gamma1.view(-1, 1, 1) * block.gnconv(block.norm1(x))
        y = block.norm2(mid.permute(0, 2, 3, 1))
        y = block.pwconv2(F.gelu(block.pwconv1(y))) * block.gamma2
        torch.testing.assert_close(block(x), mid + y.permute(0, 3, 1, 2))


def test_gnconv_refuses_widths_its_order_cannot_split():
    # Shape, gradients and bf16 at orders 1-5, with and without the global
    # filter: the component contract (the class's examples).
    with pytest.raises(ValueError, match='multiple of'):
        GnConv(24, order=5)
    with pytest.raises(ValueError, match='even'):
        GnConv(7, order=1, global_filter=True)


@pytest.mark.parametrize('depth', [18, 50])
def test_gnconv_as_resnet_plugin(depth):
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    plugins = [dict(cfg=dict(type='mmext.GnConv', order=3), position='after_conv2',
                    stages=(False, False, True, True))]
    with DefaultScope.overwrite_default_scope('mmdet'):
        resnet = MODELS.build(dict(type='mmext.ResNet', depth=depth, plugins=plugins))
    gns = [m for m in resnet.modules() if isinstance(m, GnConv)]
    assert len(gns) == (4 if depth == 18 else 9)
    plain = MODELS.build(dict(type='mmext.ResNet', depth=depth))
    assert count_params(resnet) > count_params(plain)
    resnet.eval()
    with torch.no_grad():
        outs = resnet(torch.randn(1, 3, *ODD_SIZE))
    width = 1 if depth == 18 else 4
    assert [o.shape[1] for o in outs] == [64 * width, 128 * width, 256 * width, 512 * width]
    assert outs[-1].shape[-2:] == (4, 5)


def to_mmpretrain(official):
    """Official -> mmpretrain's copy, as its tools/model_converters/hornet2mmpretrain.py
    renames: backbone. prefix, gnconv.projs, gamma{1,2}.weight, norm. -> norm3.,
    head. -> head.fc."""
    out = {}
    for k, v in official.items():
        if k.startswith('head.'):
            out['head.fc.' + k[len('head.'):]] = v
            continue
        k = k.replace('norm.', 'norm3.') if k.startswith('norm.') else k
        k = k.replace('gnconv.pws', 'gnconv.projs')
        k = re.sub(r'(gamma[12])$', r'\1.weight', k)
        out['backbone.' + k] = v
    return out


def test_mmpretrain_copy_of_the_official_weights_loads(tmp_path):
    """The configs' checkpoints (download.openmmlab.com) are mmpretrain's
    re-keyed copies of the official files: same tensors, same result; the
    classifier's final norm (mmpretrain ``norm3``) does not fill the dense
    ``norm3``."""
    src = HorNet(arch='tiny-gf')
    src.init_weights()
    ref = src.state_dict()
    official = to_official({k: v for k, v in ref.items() if not re.match(r'norm[0-3]\.', k)})
    official.update(_classifier(512))
    official['norm.weight'] = torch.full((512, ), 7.)
    torch.save({'state_dict': to_mmpretrain(official)}, tmp_path / 'mmpretrain.pth')
    dst = HorNet(arch='tiny-gf')
    report = dst.load_pretrained(str(tmp_path / 'mmpretrain.pth'))
    assert report['missing'] == [] and report['unexpected'] == []
    for k, v in dst.state_dict().items():
        if not re.match(r'norm[0-3]\.', k):
            torch.testing.assert_close(v, ref[k], msg=k)
    assert not torch.any(dst.norm3.weight == 7.)
