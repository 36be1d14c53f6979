"""FLOP counting: mmext's handles against hand derivations, and get_flops /
benchmark on one config of every design folder."""
import json
import math
import os.path as osp
import re

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, run_tool
from torch import nn

from mmext.analysis.benchmark import run_benchmark
from mmext.analysis.flops import OP_HANDLES, count_flops
from mmext.analysis.model_complexity import model_complexity, render
from mmext.models.backbones.hornet import GnConv
from mmext.registry import MODELS
from mmext.utils.errors import MMExtError


class _Fn(nn.Module):

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


def _explicit_attention(q, k, v):
    return ((q * q.shape[-1]**-0.5) @ k.transpose(-2, -1)).softmax(-1) @ v


def test_sdpa_handle_counts_the_two_matmuls():
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
    fused = count_flops(_Fn(F.scaled_dot_product_attention), (q, k, v))
    explicit = count_flops(_Fn(_explicit_attention), (q, k, v))
    by_hand = 2 * 3 * 5 * 7 * (8 + 4)  # q k^T (5x8 @ 8x7) and attn v (5x7 @ 7x4) per head
    assert fused.total == explicit.total == by_hand
    assert fused.by_operator == {'scaled_dot_product_attention': by_hand}
    assert not fused.uncounted_ops or 'aten::scaled_dot_product_attention' not in \
        fused.uncounted_ops
    # mmengine alone has no handle: the op is reported and counts 0.
    bare = count_flops(_Fn(F.scaled_dot_product_attention), (q, k, v),
                       op_handles={'aten::scaled_dot_product_attention': None})
    assert bare.total == 0 and 'aten::scaled_dot_product_attention' in bare.uncounted_ops


def test_fused_and_explicit_attention_backbones_agree():
    """timm's PVTv2-B0 (fused attention) and mmdet's (explicit matmuls, as
    the PVTv2 configs build it) count the same FLOPs, and timm's would miss
    its attention without mmext's handle."""
    import timm
    from mmdet.models.backbones import PyramidVisionTransformerV2
    x = torch.randn(1, 3, 224, 224)
    ours = count_flops(PyramidVisionTransformerV2(embed_dims=32, num_layers=[2, 2, 2, 2]).eval(),
                       x)
    theirs_model = timm.create_model('pvt_v2_b0', features_only=True).eval()
    theirs = count_flops(theirs_model, x)
    assert theirs.by_operator.get('scaled_dot_product_attention', 0) > 0
    assert 'scaled_dot_product_attention' not in ours.by_operator
    assert ours.total == theirs.total
    bare = count_flops(theirs_model, x, op_handles={'aten::scaled_dot_product_attention': None})
    assert bare.total == theirs.total - theirs.by_operator['scaled_dot_product_attention']


@pytest.mark.parametrize('fn, shape, expected', [
    # 2-D real FFT and its inverse over (H, W) = (14, 14): 4 channels of 196
    # points each, ceil(log2 196) = 8.
    (lambda x: torch.fft.irfft2(torch.fft.rfft2(x, dim=(2, 3)), s=x.shape[-2:], dim=(2, 3)),
     (1, 4, 14, 14), {'fft_rfft2': 4 * 196 * 8, 'fft_irfft2': 4 * 196 * 8}),
    # Along dim 1 of length 10 (ceil(log2 10) = 4), 2 * 6 signals.
    (lambda x: torch.fft.rfft(x, dim=1), (2, 10, 6), {'fft_rfft': 2 * 6 * 10 * 4}),
    # Over dims (1, 2) of a channels-last map: 14 x 6 = 84 points
    # (ceil(log2 84) = 7), 2 * 3 signals.
    (lambda x: torch.fft.rfft2(x, dim=(1, 2)), (2, 14, 6, 3), {'fft_rfft2': 2 * 3 * 84 * 7}),
    # Complex n-D over the last two dims, zero-padded to 16 x 16 by s.
    (lambda x: torch.fft.fftn(x.to(torch.complex64), s=(16, 16)), (3, 9, 12),
     {'fft_fftn': 3 * 256 * 8}),
])
def test_fft_handles(fn, shape, expected):
    count = count_flops(_Fn(fn), torch.randn(shape))
    assert {k: v for k, v in count.by_operator.items() if k.startswith('fft')} == expected
    assert not [op for op in count.uncounted_ops if 'fft' in op]


def test_every_fft_op_has_a_handle():
    names = {f'aten::fft_{p}{k}fft{d}' for p in ('', 'i') for k in ('', 'r')
             for d in ('', '2', 'n')}
    assert names <= set(OP_HANDLES)


def test_gnconv_global_filter_by_hand():
    """HorNet's gnConv (order 3, C=16) with the global filter on an odd 13x11
    map, every term derived by hand."""
    c, h, w = 16, 13, 11
    hw = h * w
    m = GnConv(c, order=3, global_filter=True).eval()
    count = count_flops(m, torch.randn(1, c, h, w))
    dims = [4, 8, 16]
    ctx = sum(dims)  # 28 channels go through the filter
    conv = (2 * c * c * hw  # proj_in 1x1, C -> 2C
            + ctx // 2 * 9 * hw  # depth-wise 3x3 on the local half
            + (dims[0] * dims[1] + dims[1] * dims[2]) * hw  # pws 1x1
            + c * c * hw)  # proj_out 1x1
    norms = 2 * 5 * ctx * hw  # pre / post LayerNorm2d, affine: 5 per element
    fft = ctx // 2 * hw * math.ceil(math.log2(hw))  # per transform: 14 maps of 143 points
    # The stored 14x8 spectral filter is resampled to the 13x6 rfft spectrum
    # (real and imaginary planes, bilinear: mmengine counts 4 per output).
    resample = 4 * 2 * (ctx // 2) * h * (w // 2 + 1)
    assert count.by_operator == {'conv': conv, 'layer_norm': norms, 'fft_rfft2': fft,
                                 'fft_irfft2': fft, 'upsample_bilinear2d': resample}
    assert count.total == conv + norms + 2 * fft + resample
    # The gates are elementwise products: not counted, and said so.
    assert 'aten::mul' in count.uncounted_ops


def _odconv(kernel_num, kernel_size=3):
    return MODELS.build(dict(type='mmext.ODConv', in_channels=8, out_channels=16,
                             kernel_size=kernel_size, padding=kernel_size // 2,
                             kernel_num=kernel_num)).eval()


def test_odconv_per_sample_kernels_by_hand():
    """Batch 2, K=4 candidate kernels: the grouped convolution and the kernel
    mixing are traced; the spatial modulation of each per-sample kernel is
    the module's extra_flops: one multiply per kernel element."""
    m = _odconv(kernel_num=4)
    n, h, w = 2, 9, 11
    count = count_flops(m, torch.randn(n, 8, h, w))
    kernel = 16 * 8 * 9  # one per-sample kernel (out, in, 3, 3)
    assert count.by_operator['dynamic_kernel'] == n * kernel
    assert count.by_operator['mm'] == n * 4 * kernel  # (N, K) @ (K, out*in*9)
    hidden = m.attention.fc.out_channels
    heads = hidden * (8 + 16 + 9 + 4)  # channel, filter, spatial, kernel 1x1 convs
    assert count.by_operator['conv'] == n * (kernel * h * w + 8 * hidden + heads)
    # Per-sample kernels: the cost is linear in the batch.
    single = count_flops(m, torch.randn(1, 8, h, w))
    assert count.total == 2 * single.total
    # A 1x1 ODConv has no spatial attention: nothing to modulate.
    assert 'dynamic_kernel' not in count_flops(_odconv(1, 1), torch.randn(1, 8, 5, 5)).by_operator


def test_tadaconv_calibrated_kernels_by_hand():
    m = MODELS.build(dict(type='mmext.TAdaConv', in_channels=8, out_channels=16,
                          kernel_size=3, padding=1)).eval()
    count = count_flops(m, torch.randn(2, 8, 3, 9, 11))  # N=2 clips of T=3 frames
    assert count.by_operator['dynamic_kernel'] == 2 * 3 * 16 * 8 * 9
    # extra_flops is added to the module and every ancestor.
    host = nn.Sequential(nn.Sequential(m))
    nested = count_flops(host, torch.randn(2, 8, 3, 9, 11))
    assert nested.total == count.total == nested.of('') == nested.of('0') == nested.of('0.0')


def test_dynamic_conv_needs_no_extra_flops():
    """DynamicConv's kernel mixing is a traced matrix product: counted
    without extra_flops."""
    m = MODELS.build(dict(type='mmext.DynamicConv', in_channels=8, out_channels=16,
                          kernel_size=3, padding=1, num_kernels=4)).eval()
    count = count_flops(m, torch.randn(2, 8, 9, 11))
    assert 'dynamic_kernel' not in count.by_operator
    assert count.by_operator['mm'] >= 2 * 4 * 16 * 8 * 9


RETINANET_R18 = 'configs/resnet/retinanet_r18_fpn_1x_coco.py'


def test_model_complexity_rows_add_up():
    result = model_complexity(RETINANET_R18, (96, 128), root=ROOT)
    names = [r.name for r in result.rows]
    assert names == ['backbone', 'neck', 'bbox_head']
    assert sum(r.flops for r in result.rows) == result.total.flops
    assert sum(r.params for r in result.rows) == result.total.params
    assert result.row('backbone').type == 'ResNet-18'
    # The backbone alone at the same shape: the same figures.
    alone = model_complexity(RETINANET_R18, (96, 128), backbone_only=True, root=ROOT)
    assert alone.total.flops == result.row('backbone').flops
    assert alone.total.params == result.row('backbone').params
    text = render(result)
    # prettytable pads the cells: match the total row whatever the widths.
    assert re.search(r'\|\s*\*\*total\*\*\s*\|\s*RetinaNet\s*\|', text), text
    assert '1x3x96x128' in text
    # A full-precision model: no low-bit columns.
    assert not result.has_low_bit and 'BOPs' not in text and 'size (MB)' not in text


def test_model_complexity_segmentor_and_two_stage():
    seg = model_complexity('configs/resnet/upernet_r18-c128_4xb4-160k_ade20k-512x512.py',
                           (64, 64), root=ROOT)
    aux = seg.row('auxiliary_head')
    assert aux.flops == 0 and aux.params > 0 and 'training' in aux.note
    assert seg.row('decode_head').flops > 0
    assert sum(r.flops for r in seg.rows) == seg.total.flops
    det = model_complexity('configs/resnet/mask-rcnn_r18_fpn_1x_coco.py', (64, 64), root=ROOT)
    assert det.row('roi_head').flops > 0
    assert any('roi_head.bbox_head on' in n and 'roi_head.mask_head on' in n for n in det.notes)


def test_model_complexity_errors():
    with pytest.raises(MMExtError, match='not a timm model'):
        model_complexity('timm:resnet18', (64, 64), root=ROOT)
    with pytest.raises(MMExtError, match='not found'):
        model_complexity('configs/nope/x.py', (64, 64), root=ROOT)
    with pytest.raises(MMExtError, match='H W'):
        model_complexity(RETINANET_R18, (0, 64), root=ROOT)


def test_get_flops_cli(tmp_path):
    out = tmp_path / 'flops.json'
    proc = run_tool('tools/analysis_tools/get_flops.py', 'configs/hornet/'
                    'retinanet_hornet-tiny-gf_fpn_1x_coco.py', '--shape', '64',
                    '--json', str(out))
    assert proc.returncode == 0, proc.stderr
    assert 'Input 1x3x64x64, RetinaNet' in proc.stdout
    assert "Counted by mmext's handles" in proc.stdout and '`fft_rfft2`' in proc.stdout
    data = json.loads(out.read_text())
    assert data['by_operator']['fft_rfft2'] > 0
    assert data['total']['flops'] == sum(r['flops'] for r in data['rows'])
    bad = run_tool('tools/analysis_tools/get_flops.py', RETINANET_R18, '--shape', '1', '2', '3')
    assert bad.returncode != 0 and 'H W' in bad.stderr


# One detector per design folder, found in configs/ (a new folder needs no
# line here): get_flops and the benchmark work on every registered design.
# A folder's first RetinaNet config by name, unless it names a larger variant
# than the one below (cheaper to build at every CI run).
SMALLEST_VARIANT = {
    'g_ghostnet': 'retinanet_g-ghost-regnetx-3.2GF_fpn_1x_coco.py',
    'hatnet': 'retinanet_hatnet-tiny_fpn_1x_coco.py',
    'hornet': 'retinanet_hornet-tiny-gf_fpn_1x_coco.py',
    'moganet': 'retinanet_moganet-xtiny_fpn_1x_coco.py',
    'mpvit': 'retinanet_mpvit-t_fpn_1x_coco.py',
    'odconv': 'retinanet_r50-odconv4x_fpn_1x_coco.py',
}


def _one_detector_per_folder():
    import glob
    found = {}
    for path in sorted(glob.glob(osp.join(ROOT, 'configs', '*', 'retinanet_*.py'))):
        folder, name = path.split(osp.sep)[-2:]
        if folder not in ('_base_', 'resnet'):
            found.setdefault(folder, SMALLEST_VARIANT.get(folder, name))
    return [f'{folder}/{name}' for folder, name in sorted(found.items())]


DESIGN_CONFIGS = _one_detector_per_folder()


def test_every_design_folder_has_a_detector():
    import glob
    folders = {osp.basename(osp.dirname(p)) for p in glob.glob(osp.join(ROOT, 'configs/*/*.py'))}
    folders -= {'_base_', 'resnet'}
    assert len(DESIGN_CONFIGS) >= 19
    assert {c.split('/')[0] for c in DESIGN_CONFIGS} == folders
    for config in DESIGN_CONFIGS:
        assert osp.isfile(osp.join(ROOT, 'configs', config)), config


# Ops a design's trace must not leave uncounted: mmext has handles for them.
HANDLED = ('aten::scaled_dot_product_attention', 'aten::fft_rfft2', 'aten::fft_irfft2')


@pytest.mark.parametrize('config', DESIGN_CONFIGS)
def test_get_flops_and_benchmark_every_design(config):
    path = osp.join('configs', config)
    shape = (96, 128)
    result = model_complexity(path, shape, root=ROOT)
    backbone = result.row('backbone')
    assert 0 < backbone.flops < result.total.flops
    assert backbone.params > 0
    assert not set(result.uncounted_ops) & set(HANDLED)
    if result.has_low_bit:
        # A low-bit design (found by its weight_bits / activation_bits): its
        # binary / k-bit work is in BOPs, and out of the full-precision
        # FLOPs and the FP32 size.
        assert 0 < backbone.low_bit_macs <= backbone.bops
        assert backbone.full_precision_flops < backbone.flops
        assert backbone.effective_bytes < 4 * backbone.params
    bench = run_benchmark(path, shape=shape, repeats=1, warmup=0, machine=False,
                          progress=False, root=ROOT)
    (model, ) = bench.models
    assert model.flops == result.total.flops
    assert model.infer.median > 0


# --------------------------------------------------------------------------
# low-bit designs: BOPs and effective size (mmext.analysis.low_bit)


class ToyLowBitConv(nn.Conv2d):
    """A low-bit conv defined only here, found by its two declarations:
    weights and activations fake-quantised to ``bits`` (sign at 1 bit,
    uniform on [-1, 1] otherwise; 32 = untouched)."""

    def __init__(self, *args, weight_bits=1, activation_bits=1, keep_scale=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.weight_bits, self.activation_bits = weight_bits, activation_bits
        if keep_scale:  # a stored per-filter scale: counted at 32 bits
            self.register_buffer('scale', torch.ones(self.out_channels))

    @staticmethod
    def quantize(x, bits):
        if bits == 32:
            return x
        if bits == 1:
            return torch.where(x >= 0, 1.0, -1.0)
        levels = 2**(bits - 1) - 1
        return torch.round(x.clamp(-1, 1) * levels) / levels

    def forward(self, x):
        return self._conv_forward(self.quantize(x, self.activation_bits),
                                  self.quantize(self.weight, self.weight_bits), self.bias)


def _low_bit_model():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),  # full-precision stem
        ToyLowBitConv(8, 16, 3, padding=1, bias=False),  # XNOR-like, W1/A1
        ToyLowBitConv(16, 16, 1, activation_bits=32),  # BWN-like, W1/A32, with bias
        ToyLowBitConv(16, 16, 3, padding=1, groups=4, bias=False, weight_bits=4,
                      activation_bits=4, keep_scale=True),  # QNN-like, W4/A4
        ToyLowBitConv(16, 16, 1, bias=False, weight_bits=32, activation_bits=32),  # FP
        nn.Conv2d(16, 10, 1))  # full-precision head


def test_low_bit_bops_and_size_by_hand():
    from mmext.analysis.low_bit import effective_bits, effective_bytes
    model = _low_bit_model().eval()
    hw = 7 * 9  # odd input, stride 1 everywhere
    count = count_flops(model, torch.randn(1, 3, 7, 9))
    macs = {'0': hw * 8 * 3 * 9, '1': hw * 16 * 8 * 9, '2': hw * 16 * 16,
            '3': hw * 16 * (16 // 4) * 9, '4': hw * 16 * 16, '5': hw * 10 * 16}
    # FLOPs are unchanged by the declarations: every multiply-add is one.
    assert count.total == sum(macs.values()) == 164_808
    assert {name: (ops.precision, ops.macs) for name, ops in count.low_bit.items()} == {
        '1': ('W1/A1', 72_576), '2': ('W1/A32', 16_128), '3': ('W4/A4', 36_288)}
    assert count.low_bit_macs == 72_576 + 16_128 + 36_288
    assert count.bops == 72_576 * 1 * 1 + 16_128 * 1 * 32 + 36_288 * 4 * 4 == 1_169_280
    assert count.full_precision_flops == macs['0'] + macs['4'] + macs['5'] == 39_816
    # Bits: FP32 stem; 1-bit weights (layers 1, 2) with layer 2's bias at 32;
    # 4-bit grouped weights and their 16 stored scales at 32; the W32/A32
    # conv and the head (with bias) at 32.
    bits = (32 * 8 * 3 * 9 + 1 * 16 * 8 * 9 + (1 * 16 * 16 + 32 * 16)
            + (4 * 16 * 4 * 9 + 32 * 16) + 32 * 16 * 16 + 32 * (10 * 16 + 10))
    assert effective_bits(model) == bits == 25_280
    assert effective_bytes(model) == 3_160
    # A full-precision model: 32 bits per parameter, no BOPs.
    fp = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4, 1))
    assert effective_bytes(fp) == 4 * sum(p.numel() for p in fp.parameters())
    fp_count = count_flops(fp.eval(), torch.randn(1, 3, 7, 9))
    assert fp_count.bops == 0 and fp_count.low_bit == {}
    assert fp_count.full_precision_flops == fp_count.total
    # A module called twice counts twice; a shared weight is stored once.
    twice = ToyLowBitConv(4, 4, 1, bias=False)
    shared = nn.Sequential(twice, twice).eval()
    assert count_flops(shared, torch.randn(1, 4, 3, 5)).bops == 2 * 15 * 16
    assert effective_bits(shared) == 16


class _HiddenConv(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, w):
        return F.conv2d(x, w)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class _HiddenLowBit(ToyLowBitConv):

    def forward(self, x):
        return _HiddenConv.apply(x, self.weight)


def test_low_bit_declarations_are_checked():
    from mmext.analysis.low_bit import effective_bits
    x = torch.randn(1, 4, 5, 5)
    bad = ToyLowBitConv(4, 4, 1)
    del bad.activation_bits
    with pytest.raises(MMExtError, match='declares weight_bits but not activation_bits'):
        count_flops(bad, x)
    for value in (0, 33, 1.0, True):
        bad = ToyLowBitConv(4, 4, 1, weight_bits=value)
        with pytest.raises(MMExtError, match='expected an int in 1..32'):
            effective_bits(bad)
    weightless = nn.Identity()
    weightless.weight_bits = weightless.activation_bits = 1
    with pytest.raises(MMExtError, match='no weight tensor'):
        count_flops(nn.Sequential(weightless), x)
    # The trace must see the convolution, else its FLOPs would be 0.
    with pytest.raises(MMExtError, match='hidden from the trace'):
        count_flops(_HiddenLowBit(4, 4, 1).eval(), x)


@pytest.fixture
def toy_low_bit_registered():
    """ToyLowBitConv in mmext's registry for one test (a config can name
    it), removed afterwards so the shared contract tests never see it."""
    name = 'ToyLowBitConvForFlopsTest'
    MODELS.register_module(name=name, module=ToyLowBitConv)
    yield f'mmext.{name}'
    MODELS._module_dict.pop(name)


def test_get_flops_reports_low_bit_columns(toy_low_bit_registered):
    low = model_complexity(RETINANET_R18, (64, 96), root=ROOT, cfg_options={
        'model.backbone.type': 'mmext.ResNet',
        'model.backbone.block_conv_cfg': dict(type=toy_low_bit_registered)})
    # Every block conv of the R-18 (16 of them) W1/A1; stem, shortcuts,
    # neck and head full precision.
    assert len(low.low_bit) == 16
    assert {(d['weight_bits'], d['activation_bits']) for d in low.low_bit} == {(1, 1)}
    backbone = low.row('backbone')
    block_macs = sum(d['macs'] for d in low.low_bit)
    assert backbone.bops == backbone.low_bit_macs == block_macs > 0
    assert backbone.full_precision_flops == backbone.flops - block_macs
    assert low.row('neck').bops == 0 and low.row('neck').full_precision_flops == \
        low.row('neck').flops
    # Size: the 16 block convs' weights at 1 bit instead of 32; each stage's
    # first conv maps c_in -> c, its other three c -> c, all 3x3.
    block_weights = sum(9 * (c_in * c + 3 * c * c)
                        for c_in, c in ((64, 64), (64, 128), (128, 256), (256, 512)))
    assert block_weights == 10_985_472
    assert low.row('neck').effective_bytes == 4 * low.row('neck').params
    assert backbone.effective_bytes == 4 * backbone.params - block_weights * 31 // 8
    assert low.total.effective_bytes == 4 * low.total.params - block_weights * 31 // 8
    text = render(low)
    assert 'BOPs (G)' in text and 'full-precision FLOPs (G)' in text and 'size (MB)' in text
    assert 'W1/A1 x 16' in text
