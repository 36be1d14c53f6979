"""The shared backbone machinery on a four-stage toy backbone: checkpoint
layouts and containers, the load report, when the stage arguments are
checked, padding helpers. The contract checks themselves run on every
registered backbone in test_backbone_contract.py."""

import pytest
import torch
import torch.nn as nn
from timm.layers import DropPath

from mmext.models.backbones.base_backbone import (DenseBackbone, checkpoint_call, crop_to,
                                                  pad_to_multiple)
from mmext.utils.errors import MMExtError

DIMS = (8, 16, 24, 32)


class Block(nn.Module):

    def __init__(self, dim, drop_path):
        super().__init__()
        self.norm = nn.BatchNorm2d(dim)
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        return x + self.drop_path(self.conv(self.norm(x)))


class Toy(DenseBackbone):
    """Official layout: ``stem{i}.*`` / ``stage{i}.*`` (1-based); mmext:
    ``downsamples.{i}`` / ``stages.{i}`` and a dense-only ``out_norm{i}``."""
    official_drop_prefixes = ('head.', )
    expected_missing = (r'^out_norms\.', )
    default_init_cfg = [dict(type='TruncNormal', layer='Conv2d', std=0.02, bias=0.)]

    def __init__(self, drop_path_rate=0., **kwargs):
        super().__init__(**kwargs)
        dpr = torch.linspace(0, drop_path_rate, 4).tolist()
        self.downsamples = nn.ModuleList(
            nn.Conv2d(3 if i == 0 else DIMS[i - 1], d, 3, 4 if i == 0 else 2, 1)
            for i, d in enumerate(DIMS))
        self.stages = nn.ModuleList(Block(d, p) for d, p in zip(DIMS, dpr))
        self.out_norms = nn.ModuleList(nn.GroupNorm(1, d) for d in DIMS)
        self.out_channels = DIMS
        self.out_strides = (4, 8, 16, 32)

    def stage_modules(self, index):
        return [self.downsamples[index], self.stages[index], self.out_norms[index]]

    @classmethod
    def convert_official(cls, state_dict):
        out = {}
        for k, v in state_dict.items():
            head, _, rest = k.partition('.')
            for word, new in (('stem', 'downsamples'), ('stage', 'stages')):
                if head.startswith(word) and head[len(word):].isdigit():
                    k = f'{new}.{int(head[len(word):]) - 1}.{rest}'
            out[k] = v
        return out

    def forward(self, x):
        outs = []
        for i in range(4):
            x = checkpoint_call(self.stages[i], self.downsamples[i](x), with_cp=self.with_cp)
            if i in self.out_indices:
                outs.append(self.out_norms[i](x))
        return tuple(outs)


def to_official(sd):
    out = {}
    for k, v in sd.items():
        head, i, rest = k.split('.', 2)
        out[f"{ {'downsamples': 'stem', 'stages': 'stage'}[head]}{int(i) + 1}.{rest}"] = v
    return out


@pytest.mark.parametrize('container', ['state_dict', 'model', 'raw', 'mmext'])
def test_official_and_mmext_layouts_load(tmp_path, container):
    src = Toy()
    src.init_weights()
    ref = src.state_dict()
    body = {k: v for k, v in ref.items() if not k.startswith('out_norms')}
    official = to_official(body)
    official['head.weight'] = torch.zeros(10, 32)
    obj = {'state_dict': dict(official), 'meta': {}} if container == 'state_dict' else \
        {'model': {'module.' + k: v for k, v in official.items()}} if container == 'model' else \
        official if container == 'raw' else {'state_dict': body}
    torch.save(obj, tmp_path / 'c.pth')
    dst = Toy(init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'c.pth')))
    dst.init_weights()
    for k, v in dst.state_dict().items():
        if not k.startswith('out_norms'):
            torch.testing.assert_close(v, ref[k])
    report = dst.load_pretrained(str(tmp_path / 'c.pth'))
    assert report['missing'] == [] and report['unexpected'] == []
    assert len(report['expected_missing']) == 8


def test_load_report_and_errors(tmp_path):
    src = Toy().state_dict()
    partial = {k: v for k, v in to_official(
        {k: v for k, v in src.items() if not k.startswith('out_norms')}).items()
        if not k.startswith('stage4.')}
    partial['stage1.extra'] = torch.zeros(1)
    torch.save(partial, tmp_path / 'p.pth')
    report = Toy().load_pretrained(str(tmp_path / 'p.pth'))
    assert report['missing'] and all(k.startswith('stages.3.') for k in report['missing'])
    assert report['unexpected'] == ['stages.0.extra']
    # A detector checkpoint: the backbone part picked by prefix.
    torch.save({'state_dict': {'backbone.' + k: v for k, v in src.items()}}, tmp_path / 'd.pth')
    assert Toy().load_pretrained(str(tmp_path / 'd.pth'), prefix='backbone.')['missing'] == []
    with pytest.raises(MMExtError, match='starts with'):
        Toy().load_pretrained(str(tmp_path / 'd.pth'), prefix='neck.')
    bad = dict(src)
    bad['stages.0.conv.weight'] = torch.zeros(1, 1, 3, 3)
    torch.save(bad, tmp_path / 'b.pth')
    with pytest.raises(MMExtError, match='shape mismatch'):
        Toy().load_pretrained(str(tmp_path / 'b.pth'))
    torch.save({'x.y': torch.zeros(1)}, tmp_path / 'n.pth')
    with pytest.raises(MMExtError, match='no key'):
        Toy().load_pretrained(str(tmp_path / 'n.pth'))
    with pytest.raises(MMExtError, match='not found'):
        Toy().load_pretrained(str(tmp_path / 'missing.pth'))


def test_stage_arguments_are_checked_before_the_subclass_builds():
    """The base validates in its ``__init__``, so a subclass that builds per
    ``out_index`` (FCViT's output norms) never indexes out of range, and
    freezes after the subclass's ``__init__`` (the metaclass hook)."""
    class PerIndex(Toy):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.extra = nn.ModuleList(nn.Identity() for _ in (DIMS[i] for i in self.out_indices))

    with pytest.raises(ValueError, match=r'PerIndex: out_indices=\(0, 4\) has \[4\] outside the '
                                         r'4 stages \[0, 3\]'):
        PerIndex(out_indices=(0, 4))
    with pytest.raises(ValueError, match=r'PerIndex: frozen_stages=True must be an int in \[-1, 4\]'):
        PerIndex(frozen_stages=True)
    model = PerIndex(out_indices=[1, 3], frozen_stages=2)
    assert model.out_indices == (1, 3)
    assert not any(p.requires_grad for m in model.stage_modules(1) for p in m.parameters())
    assert all(p.requires_grad for m in model.stage_modules(2) for p in m.parameters())


def test_pad_and_crop():
    x = torch.randn(1, 2, 13, 9)
    y, size = pad_to_multiple(x, 7)
    assert y.shape[-2:] == (14, 14) and size == (13, 9)
    assert torch.equal(crop_to(y, size), x)
    y, _ = pad_to_multiple(x, (1, 4))
    assert y.shape[-2:] == (13, 12)
    assert pad_to_multiple(x, 1)[0] is x


def test_checkpoint_call_only_when_recording():
    calls = []
    m = nn.Sequential(nn.Linear(3, 3), nn.GELU(), nn.Linear(3, 3))
    m[1].register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(2, 3, requires_grad=True)
    checkpoint_call(m, x, with_cp=True).sum().backward()
    assert len(calls) == 2  # forward, then the recomputation in backward
    with torch.no_grad():
        checkpoint_call(m, x, with_cp=True)
    assert len(calls) == 3


def test_resolve_arch_names_aliases_and_dicts():
    class Archs(DenseBackbone):
        arch_settings = {'tiny': dict(dims=[1, 2, 3, 4])}
        arch_aliases = {'t': 'tiny'}

    got = Archs.resolve_arch('T')
    assert got == Archs.arch_settings['tiny']
    got['dims'].append(5)  # a copy: the table is untouched
    assert Archs.arch_settings['tiny']['dims'] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match=r"Archs: unknown arch 'huge'.*\['tiny'\].*\['t'\]"):
        Archs.resolve_arch('huge')
    with pytest.raises(ValueError, match=r"needs the keys \['dims', 'depth'\].*missing \['depth'\]"):
        Archs.resolve_arch(dict(dims=[1, 2, 3, 4]), required=('dims', 'depth'))
    with pytest.raises(ValueError, match='4 entries'):
        Archs.resolve_arch(dict(dims=[1, 2]), required=('dims', ), per_stage=('dims', ))
    with pytest.raises(ValueError, match='str or a dict'):
        Archs.resolve_arch(3)
    assert Archs.resolve_arch(dict(dims=[4, 3, 2, 1]), ('dims', ), ('dims', ))['dims'] == [4, 3, 2, 1]

    class ThreeStages(Archs):
        num_stages = 3

    # One entry per stage of the class, not a fixed four.
    assert ThreeStages.resolve_arch(dict(dims=[1, 2, 3]), ('dims', ), ('dims', ))['dims'] == [1, 2, 3]
    with pytest.raises(ValueError, match='3 entries'):
        ThreeStages.resolve_arch(dict(dims=[1, 2, 3, 4]), ('dims', ), ('dims', ))


@pytest.mark.parametrize('nested', [False, True])
def test_pretrained_init_log_names_the_checkpoint(tmp_path, monkeypatch, nested):
    """mmengine's per-parameter init log says the loaded parameters came
    from the checkpoint, for a top-level backbone and one inside a model."""
    from mmengine.model import BaseModule
    src = Toy()
    src.init_weights()
    torch.save({'state_dict': src.state_dict()}, tmp_path / 'c.pth')
    logged = {}

    def capture(module):
        logged.update({n: module._params_init_info[p]['init_info']
                       for n, p in module.named_parameters()})

    monkeypatch.setattr(BaseModule, '_dump_init_info', capture)
    backbone = Toy(init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'c.pth')))
    if nested:
        model = BaseModule()
        model.backbone = backbone
        model.init_weights()
        prefix = 'backbone.'
    else:
        backbone.init_weights()
        prefix = ''
    assert not hasattr(backbone, '_params_init_info')
    names = [n for n, _ in backbone.named_parameters()]
    assert names and all(f'load from {tmp_path / "c.pth"}' in logged[prefix + n]
                         for n in names), logged
