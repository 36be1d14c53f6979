"""Reading the checkpoints users have (issue 12, section 2).

* Training-script metadata (``args`` as an ``argparse.Namespace``, paths)
  and empty mmengine ``HistoryBuffer``s load with ``weights_only`` on.
* Any other Python object is refused, the error names it and the opt-in,
  and only the opt-in reads it.
* One reading path: ``init_cfg`` Pretrained, ``load_matching_checkpoint``
  (tools/test.py) and the converter.
* The converter takes every design with an official layout, discovered from
  the designs' declarations (a test-only design is listed too); each ResNet
  layout (SE / ECA / CBAM / ODConv) converts a file written in the layout of
  ``checkpoint_layouts.md`` to exactly the keys of its config's backbone.
"""
import argparse
import io
import pathlib
import re
import types

import pytest
import torch
from conftest import CONFIGS

import mmext  # noqa: F401  (the weights-only allow-list)
from mmext.models.backbones.mpvit import MPViT
from mmext.models.backbones.sda_resnet import SDAResNet
from mmext.models.official_layouts import (OfficialLayout, get_official_layout,
                                           official_layouts, rename_resnet_keys)
from mmext.tools import convert_official
from mmext.utils.checkpoint import load_checkpoint, load_matching_checkpoint, read_state_dict
from mmext.utils.errors import MMExtError, explain

def _load_converter():
    """The checkout's script, a thin wrapper of mmext.tools.convert_official."""
    import importlib.util
    import os.path as osp
    path = osp.join(osp.dirname(CONFIGS), 'tools', 'model_converters', 'convert_official.py')
    spec = importlib.util.spec_from_file_location('convert_official', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CONVERTER = _load_converter()
convert = CONVERTER.main
UNPICKLED = []


def _record(tag):
    """What a hostile file would call on loading (harmless here)."""
    UNPICKLED.append(tag)
    return tag


class RunsCode:
    def __reduce__(self):
        return _record, ('ran',)


class TrainerState:
    """A custom class next to the weights: not allow-listed."""

    def __init__(self, step):
        self.step = step


def _roundtrip(obj):
    f = io.BytesIO()
    torch.save(obj, f)
    f.seek(0)
    return torch.load(f)  # torch's default: weights_only=True


def deit_args():
    return argparse.Namespace(model='mpvit_tiny', lr=5e-4, epochs=300, output_dir=pathlib.Path(
        '/runs/mpvit'), aa='rand-m9-mstd0.5-inc1', opts=types.SimpleNamespace(amp=True))


# -- the allow-list ---------------------------------------------------------------------------
def test_training_script_metadata_loads_weights_only():
    ckpt = _roundtrip({'model': {'w': torch.ones(2)}, 'optimizer': {'state': {}, 'param_groups': [
        {'lr': 0.1, 'betas': (0.9, 0.999)}]}, 'epoch': 299, 'args': deit_args(),
        'scaler': {'scale': 65536.0}})
    args = ckpt['args']
    assert isinstance(args, argparse.Namespace) and args.epochs == 300 and args.opts.amp
    # Paths come back as pure paths: values, no file-system object.
    assert args.output_dir == pathlib.PurePosixPath('/runs/mpvit')


def test_empty_history_buffer_loads_weights_only():
    from mmengine.logging import HistoryBuffer
    ckpt = _roundtrip({'message_hub': {'log_scalars': {'train/loss': HistoryBuffer()}}})
    buf = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(buf, HistoryBuffer) and buf.data[0].size == 0


def test_bytes_stays_refused_beyond_the_empty_string():
    class AllocatesBytes:
        def __reduce__(self):
            return bytes, (1 << 40, )
    with pytest.raises(Exception, match='only bytes()'):
        _roundtrip({'x': AllocatesBytes()})


# -- refused objects and the opt-in -----------------------------------------------------------
def test_other_objects_are_refused_and_named_and_only_the_opt_in_reads_them(tmp_path):
    path = tmp_path / 'hostile.pth'
    torch.save({'model': {'w': torch.ones(1)}, 'hook': RunsCode()}, path)
    UNPICKLED.clear()
    with pytest.raises(MMExtError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert '\n' not in msg and f'{__name__}._record' in msg, msg
    assert 'weights_only=False' in msg and '--no-weights-only' in msg, msg
    # One command that works in a checkout and in an installed package.
    assert 'python -m mmext convert TYPE SRC DST --no-weights-only' in msg, msg
    assert UNPICKLED == []
    # The stack's own loader (mmengine, torch.load) refuses it too, and the
    # tools explain that error the same way.
    with pytest.raises(Exception) as raw:
        torch.load(path)
    assert f'{__name__}._record' in explain(raw.value)
    assert UNPICKLED == []
    assert read_state_dict(path, weights_only=False)['w'].item() == 1
    assert UNPICKLED == ['ran']


def test_init_cfg_and_converter_read_a_trusted_file_only_with_the_opt_in(tmp_path, capsys):
    from test_base_backbone import Toy
    ref = Toy().state_dict()
    src = tmp_path / 'own_pretraining.pth'
    torch.save({'model': ref, 'trainer': TrainerState(7)}, src)
    init = dict(type='Pretrained', checkpoint=str(src))
    with pytest.raises(MMExtError, match=f'{__name__}.TrainerState'):
        Toy(init_cfg=init).init_weights()
    dst = Toy(init_cfg=dict(init, weights_only=False))
    dst.init_weights()
    torch.testing.assert_close(dst.state_dict(), ref)

    official = {'stem.0.conv.weight': torch.randn(4, 3, 3, 3), 'cls_head.cls.bias': torch.ones(2)}
    torch.save({'model': official, 'trainer': TrainerState(7)}, src)
    out = tmp_path / 'converted.pth'
    with pytest.raises(SystemExit):
        convert(['MPViT', str(src), str(out)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith('convert_official: error: ') and f'{__name__}.TrainerState' in err
    assert '--no-weights-only' in err and not out.exists()
    convert(['MPViT', str(src), str(out), '--no-weights-only'])
    # The converted file is plain: it loads weights-only.
    converted = torch.load(out)['state_dict']
    assert converted.keys() == {'stem.0.conv.weight'}


def test_unknown_pretrained_keys_are_an_error():
    from test_base_backbone import Toy
    with pytest.raises(MMExtError, match="unknown init_cfg key.*'weight_only'"):
        Toy(init_cfg=dict(type='Pretrained', checkpoint='x.pth', weight_only=False)).init_weights()


# -- one reading path -------------------------------------------------------------------------
def test_deit_style_mpvit_file_loads_through_init_cfg_and_the_converter(tmp_path):
    from test_mpvit import to_official
    ref = MPViT(arch='tiny').state_dict()
    official = to_official(ref, MPViT.arch_settings['tiny']['num_layers'])
    official['cls_head.cls.weight'] = torch.zeros(1000, 216)
    path = tmp_path / 'mpvit_tiny.pth'
    torch.save({'model': official, 'epoch': 299, 'args': deit_args(),
                'model_ema': {'module.' + k: v for k, v in official.items()}}, path)

    dst = MPViT(arch='tiny', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    dst.init_weights()
    torch.testing.assert_close(dst.state_dict(), ref)

    out = tmp_path / 'mpvit_tiny_mmext.pth'
    convert(['mmext.MPViT', str(path), str(out)])
    converted = torch.load(out)['state_dict']
    assert converted.keys() == ref.keys()
    torch.testing.assert_close(converted, ref)


def test_load_matching_checkpoint_reads_training_script_files(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    ref = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in model.state_dict().items()}
    path = tmp_path / 'detector.pth'
    torch.save({'model': {'module.' + k: v for k, v in ref.items()}, 'args': deit_args(),
                'meta': {'dataset_meta': {'classes': ('a', 'b')}}}, path)
    runner = types.SimpleNamespace(model=model)
    assert load_matching_checkpoint(runner, str(path), strict=True) == ([], [])
    torch.testing.assert_close(model.state_dict(), ref)
    assert model.dataset_meta == {'classes': ('a', 'b')} and runner._has_loaded
    torch.save({'state_dict': {'other.weight': torch.ones(1)}}, path)
    with pytest.raises(MMExtError, match='does not match the model.*other.weight'):
        load_matching_checkpoint(runner, str(path))
    torch.save({'epoch': 3, 'args': deit_args()}, path)
    with pytest.raises(MMExtError, match=r"holds no state_dict \(top-level keys: epoch, args\)"):
        load_matching_checkpoint(runner, str(path))


# -- the converter knows every official layout ------------------------------------------------
def test_converter_knows_every_design_with_an_official_layout():
    from mmext.models.backbones.base_backbone import DenseBackbone
    from mmext.registry import MODELS
    # Every dense backbone with released weights (convert_official not None),
    # and at least the other layouts known today (a new design adds its own).
    dense = {n for n, c in MODELS.module_dict.items()
             if isinstance(c, type) and issubclass(c, DenseBackbone)}
    released = {n for n in dense if MODELS.module_dict[n].convert_official is not None}
    names = set(official_layouts())
    assert released | {'SDAResNet', 'SE-ResNet', 'ECA-ResNet', 'CBAM-ResNet',
                       'ODConv-ResNet', 'PVTv2'} <= names
    assert not (dense - released) & names
    assert 'ThreshNet' in dense - released
    for name in names:
        assert get_official_layout(f'mmext.{name.lower()}').name == name
    with pytest.raises(MMExtError, match='no official checkpoint layout.*SE-ResNet'):
        get_official_layout('ResNet')


def test_a_new_design_declaring_a_layout_is_listed(monkeypatch):
    """Test-only designs, registered for this test: a class with its own
    ``convert_official`` and a plugin declaring a ResNet layout; and an
    upstream design bound in an mmext module. The converter lists all three
    and converts with each design's own function."""
    from mmext.models.backbones import pvt
    from mmext.models.upstream import UpstreamDesign
    from mmext.registry import MODELS

    class ToyNet(torch.nn.Module):
        official_drop_prefixes = ('head.', )

        def __init__(self, depth=18):
            super().__init__()

        @classmethod
        def convert_official(cls, state_dict):
            return {k.replace('blk', 'block'): v for k, v in state_dict.items()}

    class ToyPlugin(torch.nn.Module):
        official_layouts = (OfficialLayout(
            'Toy-ResNet', lambda sd: rename_resnet_keys(sd, [(r'\.toy\.', '.toy_plugin.')]),
            config='toy/retinanet_r50-toy_fpn_1x_coco.py'), )

    monkeypatch.setitem(MODELS.module_dict, 'ToyNet', ToyNet)
    monkeypatch.setitem(MODELS.module_dict, 'ToyPlugin', ToyPlugin)
    monkeypatch.setattr(pvt, 'TOY_UPSTREAM', UpstreamDesign(
        'ToyUp', 'mmdet.ResNet', official_layouts=(OfficialLayout('ToyUp', dict), )),
        raising=False)
    layouts = official_layouts()
    assert {'ToyNet', 'Toy-ResNet', 'ToyUp', 'SE-ResNet', 'VAN'} <= set(layouts)
    w = torch.zeros(1)
    toy = get_official_layout('mmext.toynet')
    assert (toy.model_cls, toy.arch_arg) == (ToyNet, 'depth')  # no `arch` argument
    assert toy.convert({'blk.w': w, 'head.w': w}) == {'block.w': w}
    assert get_official_layout('toy_resnet').convert(
        {'layer1.0.toy.w': w, 'fc.weight': w}) == {'layer1.0.toy_plugin.w': w}
    with pytest.raises(MMExtError, match='no --arch.*configs/toy/'):
        layouts['Toy-ResNet'].build('50')
    monkeypatch.setattr(ToyPlugin, 'official_layouts', (OfficialLayout('SE-ResNet', dict), ))
    with pytest.raises(MMExtError, match="two designs declare the official layout 'SE-ResNet'"):
        official_layouts()


def test_sda_resnet_through_the_converter(tmp_path):
    model = SDAResNet(depth=50, base_channels=8)
    ref = model.state_dict()
    official = {'fc.weight': torch.zeros(10, 256), 'bn2.weight': torch.ones(256)}
    for key, value in ref.items():
        m = re.match(r'layer(\d)\.(fcs?\..*)', key) or re.match(r'layer(\d)\.(.*)', key)
        if m is None:
            official[key] = value
        else:
            s, rest = m.groups()
            official[f'stage{s}.{rest}' if rest.startswith('fc')
                     else f'stage{s}.layers.{rest}'] = value
    src, out = tmp_path / 'sda.pth', tmp_path / 'sda_mmext.pth'
    torch.save({'state_dict': official, 'epoch': 99, 'args': deit_args()}, src)
    convert(['SDAResNet', str(src), str(out), '--arch', '50', '--cfg', 'base_channels=8'])
    converted = torch.load(out)['state_dict']
    assert converted.keys() == ref.keys()
    torch.testing.assert_close(converted, ref)


# Key regexes of the official layouts, from checkpoint_layouts.md (torchvision
# ResNet names plus each design's modules).
TORCHVISION = (r'conv1\.weight|bn1\.\w+|fc\.(weight|bias)|'
               r'layer[1-4]\.\d+\.(conv[123]\.weight|bn[123]\.\w+|downsample\.[01]\.\w+)')
DESIGN_KEYS = {
    'SE-ResNet': r'layer[1-4]\.\d+\.se\.fc\.[02]\.(weight|bias)',
    'ECA-ResNet': r'layer[1-4]\.\d+\.eca\.conv\.weight',
    'CBAM-ResNet': r'layer[1-4]\.\d+\.cbam\.(ChannelGate\.mlp\.[13]\.(weight|bias)|'
                   r'SpatialGate\.spatial\.(conv\.weight|bn\.\w+))',
    'ODConv-ResNet': r'layer[1-4]\.\d+\.conv[123]\.attention\.'
                     r'(fc|bn|channel_fc|filter_fc|spatial_fc|kernel_fc)\.\w+',
}


def to_official_resnet(state_dict):
    """mmext keys -> the official layout: SE's and CBAM's FCs are Linear
    layers there, and their modules have the official names."""
    out = {}
    for key, value in state_dict.items():
        linear = re.search(r'\.(se\.conv[12]|cbam\.channel_mlp\.[01])\.conv\.weight$', key)
        key = re.sub(r'\.se\.conv1\.conv\.', '.se.fc.0.', key)
        key = re.sub(r'\.se\.conv2\.conv\.', '.se.fc.2.', key)
        key = re.sub(r'\.cbam\.channel_mlp\.0\.conv\.', '.cbam.ChannelGate.mlp.1.', key)
        key = re.sub(r'\.cbam\.channel_mlp\.1\.conv\.', '.cbam.ChannelGate.mlp.3.', key)
        key = re.sub(r'\.cbam\.spatial_conv\.', '.cbam.SpatialGate.spatial.', key)
        out[key] = value.flatten(1) if linear else value
    return out


@pytest.mark.parametrize('name', sorted(DESIGN_KEYS))
def test_resnet_layouts_convert_to_their_config_backbone(name, tmp_path):
    """A small file in the official layout (the R-50 config's backbone at 1/8
    of its width) converts to the config backbone's keys, tensors unchanged."""
    config = f'{CONFIGS}/{official_layouts()[name].config}'
    model = convert_official._config_backbone(config, dict(base_channels=8))
    ref = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in model.state_dict().items()}
    official = to_official_resnet(ref)
    official.update({'fc.weight': torch.zeros(10, 256), 'fc.bias': torch.zeros(10)})
    pattern = re.compile(rf'^({TORCHVISION}|{DESIGN_KEYS[name]})$')
    assert all(pattern.match(k) for k in official), \
        [k for k in official if not pattern.match(k)][:5]
    assert any(re.match(DESIGN_KEYS[name], k) for k in official)
    src, out = tmp_path / 'official.pth', tmp_path / 'mmext.pth'
    torch.save({'state_dict': {'module.' + k: v for k, v in official.items()},
                'epoch': 99, 'args': deit_args()}, src)
    convert([name, str(src), str(out), '--config', config, '--cfg', 'base_channels=8'])
    converted = torch.load(out)['state_dict']
    assert converted.keys() == ref.keys()
    torch.testing.assert_close(converted, ref)
    model.load_state_dict(converted, strict=True)


def test_se_resnet_without_fc_biases_gets_zero_biases():
    weight = torch.randn(4, 64)
    out = get_official_layout('SE-ResNet').convert(
        {'layer1.0.se.fc.0.weight': weight, 'fc.weight': torch.zeros(2, 2)})
    assert out.keys() == {'layer1.0.se.conv1.conv.weight', 'layer1.0.se.conv1.conv.bias'}
    assert out['layer1.0.se.conv1.conv.weight'].shape == (4, 64, 1, 1)
    assert not out['layer1.0.se.conv1.conv.bias'].any()


PVTV2_KEYS = (r'patch_embed[1-4]\.(proj|norm)\.\w+|norm[1-4]\.\w+|head\.\w+|'
              r'block[1-4]\.\d+\.(norm1|attn\.(q|kv|sr|norm|proj)|norm2|'
              r'mlp\.(fc1|dwconv\.dwconv|fc2))\.\w+')


def test_pvtv2_layout_converts_to_its_config_backbone(tmp_path):
    from test_pvt import to_official_v2
    config = f'{CONFIGS}/pvtv2/retinanet_pvtv2-b0_fpn_1x_coco.py'
    model = convert_official._config_backbone(config, dict(embed_dims=8))
    ref = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    official = to_official_v2(ref)
    official['head.weight'] = torch.zeros(10, 64)
    assert all(re.fullmatch(PVTV2_KEYS, k) for k in official), \
        [k for k in official if not re.fullmatch(PVTV2_KEYS, k)][:5]
    src, out = tmp_path / 'pvt_v2_b0.pth', tmp_path / 'pvtv2_mmext.pth'
    torch.save(official, src)
    convert(['PVTv2', str(src), str(out), '--config', config, '--cfg', 'embed_dims=8'])
    converted = torch.load(out)['state_dict']
    assert converted.keys() == ref.keys()
    torch.testing.assert_close(converted, ref)
