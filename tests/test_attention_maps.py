"""Attention / gate map capture (mmext.analysis.attention_maps) and the
visualize_attention tool: the captured maps are the tensors the modules really
multiply with, the grid has a tile per map, the tool writes it end to end."""
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import CONFIGS, run_tool
from design_checks import randomize

from mmext.analysis.attention_maps import (collect_attention, declared_maps, default_images,
                                           render_grid)
from mmext.models.backbones.hornet import GnConv
from mmext.models.backbones.moganet import MultiOrderGatedAggregation
from mmext.models.backbones.van import LKA
from mmext.models.layers import SKConv
from mmext.models.layers.odconv import ODConv
from mmext.registry import MODELS
from mmext.utils.errors import MMExtError

TOOL = 'tools/analysis_tools/visualize_attention.py'
ODD = (13, 17)



def _input(c, size=ODD, n=2, seed=1):
    return torch.randn(n, c, *size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize('design', ['SE', 'ECA'])
def test_channel_weights_are_output_over_input(design):
    module = randomize(MODELS.build(dict(type=f'mmext.{design}', in_channels=32, **(
        dict(ratio=4) if design == 'SE' else {}))))
    x = _input(32)
    records = collect_attention(module, x)
    assert [(r.design, r.kind) for r in records] == [(design, 'channel')]
    w = records[0].tensor
    assert w.shape == (2, 32)
    assert ((w > 0) & (w < 1)).all()
    out = module(x)
    # The plugin's output is x * w: where x is not tiny, the ratio is w.
    ratio = out / x
    mask = x.abs() > 1e-3
    expected = w[:, :, None, None].expand_as(x)
    torch.testing.assert_close(ratio[mask], expected[mask], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out, x * w[:, :, None, None])


def test_cbam_channel_and_spatial_reproduce_output():
    module = randomize(MODELS.build(dict(type='mmext.CBAM', in_channels=32, ratio=4)))
    module.train()
    x = _input(32)
    records = collect_attention(module, x)
    assert module.training, 'collect_attention must restore the training mode'
    assert [(r.kind, r.label) for r in records] == [('channel', 'channel'),
                                                    ('spatial', 'spatial')]
    wc, ws = records[0].tensor, records[1].tensor
    assert wc.shape == (2, 32)
    assert ws.shape == (2, 1, *ODD)
    assert ((ws > 0) & (ws < 1)).all() and ws.std() > 0
    expected = module.eval()(x)
    torch.testing.assert_close(x * wc[:, :, None, None] * ws, expected, rtol=1e-5, atol=1e-6)


def test_lka_map_matches_hand_reference():
    lka = randomize(LKA(8))
    x = _input(8)
    (record, ) = collect_attention(lka, x)
    assert (record.design, record.kind) == ('LKA', 'spatial')

    def conv(t, m):
        return F.conv2d(t, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)

    ref = conv(conv(conv(x, lka.conv0), lka.conv_spatial), lka.conv1)
    assert record.tensor.shape == (2, 8, *ODD)
    torch.testing.assert_close(record.tensor, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x * record.tensor, lka(x), rtol=1e-5, atol=1e-5)


def test_moganet_gate_is_silu_of_gate_conv():
    moga = randomize(MultiOrderGatedAggregation(16))
    x = _input(16)
    (record, ) = collect_attention(moga, x)
    assert (record.design, record.kind, record.label) == ('MogaNet', 'spatial', 'gate')
    # The module's own definition: y = SiLU(p + sigma * (p - GAP(p))), p = proj_1(x).
    p = F.conv2d(x, moga.proj_1.weight, moga.proj_1.bias)
    y = F.silu(p + moga.sigma.scale * (p - p.mean((2, 3), keepdim=True)))
    gate = F.silu(F.conv2d(y, moga.gate.weight, moga.gate.bias))
    torch.testing.assert_close(record.tensor, gate, rtol=1e-5, atol=1e-5)
    # ... and it is the factor the value branch is multiplied with.
    value = F.silu(moga.value(y))
    expected = F.conv2d(record.tensor * value, moga.proj_2.weight, moga.proj_2.bias) + x
    torch.testing.assert_close(moga(x), expected, rtol=1e-4, atol=1e-5)


def test_sk_selection_weights_per_branch():
    sk = randomize(SKConv(16, 16, 3, padding=1, num_branches=3, min_channels=4))
    x = _input(16)
    records = collect_attention(sk, x)
    assert [r.label for r in records] == ['branch 0', 'branch 1', 'branch 2']
    weights = torch.stack([r.tensor for r in records], dim=1)
    assert weights.shape == (2, 3, 16)
    torch.testing.assert_close(weights.sum(1), torch.ones(2, 16))
    sk.eval()
    with torch.no_grad():
        feats = torch.stack([b(x) for b in sk.branches], dim=1)
        torch.testing.assert_close(weights, sk.branch_attention(feats.sum(1))[..., 0, 0])
        torch.testing.assert_close((feats * weights[..., None, None]).sum(1), sk(x))


def test_odconv_and_gnconv_maps_are_what_the_module_uses():
    od = randomize(ODConv(8, 12, 3, padding=1, kernel_num=2)).eval()
    x = _input(8)
    records = collect_attention(od, x)
    channel, filt = od.attention(x)[:2]
    assert [r.label for r in records] == ['input channel', 'filter']
    torch.testing.assert_close(records[0].tensor, channel.flatten(1).detach())
    torch.testing.assert_close(records[1].tensor, filt.flatten(1).detach())

    gn = randomize(GnConv(16, order=3)).eval()
    x = _input(16)
    records = collect_attention(gn, x)
    assert [r.tensor.shape[1] for r in records] == gn.dims
    q = gn.proj_in(x)[:, gn.dims[0]:]
    gates = torch.split(gn.dwconv(q) * gn.scale, gn.dims, dim=1)
    for record, gate in zip(records, gates):
        torch.testing.assert_close(record.tensor, gate.detach())


@pytest.fixture(scope='module')
def r18_se_cbam():
    model = MODELS.build(dict(type='mmext.ResNet', depth=18, plugins=[
        dict(cfg=dict(type='mmext.SE', ratio=4), position='after_conv2'),
        dict(cfg=dict(type='mmext.CBAM', ratio=4), position='after_conv2')]))
    return randomize(model)


def test_collect_on_resnet18_finds_every_plugin_in_order(r18_se_cbam):
    records = collect_attention(r18_se_cbam, _input(3, (48, 64), n=1))
    blocks = [f'layer{i}.{j}' for i in range(1, 5) for j in range(2)]
    expected = [(f'{b}.{p}', k) for b in blocks
                for p, k in (('se', 'channel'), ('cbam', 'channel'), ('cbam', 'spatial'))]
    assert [(r.name, r.kind) for r in records] == expected
    widths = {f'layer{i}': c for i, c in zip(range(1, 5), (64, 128, 256, 512))}
    for r in records:
        c = widths[r.name.split('.')[0]]
        assert r.tensor.shape[:2] == ((1, c) if r.kind == 'channel' else (1, 1))

    only = collect_attention(r18_se_cbam, _input(3, (48, 64), n=1), modules=r'layer4\.1\.cbam')
    assert [(r.name, r.label) for r in only] == [('layer4.1.cbam', 'channel'),
                                                 ('layer4.1.cbam', 'spatial')]
    with pytest.raises(MMExtError, match='matches --modules'):
        collect_attention(r18_se_cbam, _input(3, (48, 64), n=1), modules='nothing_like_this')


def test_model_without_attention_is_a_clear_error():
    plain = MODELS.build(dict(type='mmext.ResNet', depth=18))
    assert declared_maps(plain) is None
    with pytest.raises(MMExtError, match='no supported attention module.*CBAM.*LKA.*MogaNet'):
        collect_attention(plain, _input(3, (32, 32), n=1))


def test_render_grid_has_a_tile_per_map(r18_se_cbam, tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    records = collect_attention(r18_se_cbam, _input(3, (40, 56), n=1))
    lka = randomize(LKA(8))
    records += collect_attention(lka, _input(8, (10, 14), n=1))
    out = str(tmp_path / 'sub' / 'grid.png')
    layout = render_grid(image, records, out, channels_per_map=2, tile_size=96)

    png = cv2.imread(out)
    assert png is not None and png.shape[:2] == layout.shape
    # The input, one tile per single-channel map or weight vector, and for
    # LKA's 8-channel map the mean plus two channels.
    assert layout.num_tiles == 1 + (len(records) - 1) + 3 >= len(records)
    assert layout.rows * layout.cols >= layout.num_tiles > (layout.rows - 1) * layout.cols
    assert (layout.tile_w, layout.tile_h) == (96, round(40 * 96 / 56))
    assert layout.titles[0].startswith('input')
    assert layout.titles[1].startswith('layer1.0.se') and 'channel' in layout.titles[1]
    assert 'spatial' in layout.titles[3] and layout.titles[-1].startswith('<model>')
    y0, x0, y1, x1 = layout.picture_box(0)
    expected = cv2.resize(image, (layout.tile_w, layout.tile_h), interpolation=cv2.INTER_LINEAR)
    assert np.abs(png[y0:y1, x0:x1].astype(int) - expected).mean() < 2
    for i in range(layout.num_tiles):
        y0, x0, y1, x1 = layout.picture_box(i)
        assert png[y0:y1, x0:x1].std() > 5, f'tile {i} ({layout.titles[i]}) is blank'
    # Tiles past the last one stay background.
    if layout.num_tiles < layout.rows * layout.cols:
        y0, x0, y1, x1 = layout.picture_box(layout.num_tiles)
        assert png[y0:y1, x0:x1].std() == 0

    capped = render_grid(image, records, None, max_maps=3)
    assert (capped.records, capped.skipped, capped.num_tiles) == (3, len(records) - 3, 4)


def test_default_images_missing_is_a_clear_error(tmp_path):
    with pytest.raises(MMExtError, match='generate_data.py'):
        default_images(data_root=str(tmp_path))


def test_tool_writes_grid_and_rejects_plain_config(tmp_path, embedded_root):
    image = sorted(default_images(num=1, data_root=embedded_root))[0]
    out = tmp_path / 'maps'
    proc = run_tool(TOOL, osp.join(CONFIGS, 'cbam', 'retinanet_r50-cbam_fpn_1x_coco.py'), image,
                    '--shape', '64', '64', '--out', str(out), '--max-maps', '6')
    assert proc.returncode == 0, proc.stderr[-3000:]
    png_path = out / (osp.splitext(osp.basename(image))[0] + '_attention.png')
    png = cv2.imread(str(png_path))
    assert png is not None
    # 6 CBAM maps of the first blocks (channel, spatial, ...) + the input: a 3 x 3 grid.
    assert '6 maps of CBAM in 7 tiles, 26 more not drawn' in proc.stdout
    assert png.shape[0] > 3 * 192 and png.shape[1] > 3 * 192

    proc = run_tool(TOOL, osp.join(CONFIGS, 'resnet', 'retinanet_r18_fpn_1x_coco.py'), image,
                    '--shape', '64', '64', '--out', str(out / 'plain'))
    assert proc.returncode == 1
    assert 'RetinaNet has no supported attention module' in proc.stderr
    assert 'CBAM' in proc.stderr and 'Traceback' not in proc.stderr
    assert not (out / 'plain').exists()


@pytest.mark.parametrize('config,design', [
    ('se/retinanet_r50-se_fpn_1x_coco.py', 'SE'),
    ('eca/retinanet_r50-eca_fpn_1x_coco.py', 'ECA'),
    ('sk/retinanet_x50-32x4d-sk_fpn_1x_coco.py', 'SK'),
    ('odconv/retinanet_r50-odconv1x_fpn_1x_coco.py', 'ODConv'),
    ('van/retinanet_van-b0_fpn_1x_coco.py', 'LKA'),
    ('moganet/retinanet_moganet-xtiny_fpn_1x_coco.py', 'MogaNet'),
    ('hornet/retinanet_hornet-tiny-gf_fpn_1x_coco.py', 'GnConv'),
])
def test_every_attention_design_from_its_config(config, design, tmp_path):
    """The tool's path (config -> model -> grid) for each design's own config."""
    from mmext.analysis.attention_maps import visualize
    rng = np.random.default_rng(0)
    image = str(tmp_path / 'in.png')
    cv2.imwrite(image, rng.integers(0, 256, (61, 77, 3), dtype=np.uint8))
    ((out_file, records, layout), ) = visualize(osp.join(CONFIGS, config), [image],
                                                out_dir=str(tmp_path), max_maps=4)
    assert {r.design for r in records} == {design}
    assert all(r.tensor.shape[0] == 1 for r in records)
    assert layout.records == 4 and layout.skipped == len(records) - 4
    assert cv2.imread(out_file).shape[:2] == layout.shape
