"""Contract checks shared by the tests of every mmext dense backbone.

``build(**overrides)`` is a callable returning a fresh backbone of one variant
(e.g. ``functools.partial(VAN, arch='b0')``); the checks pass it the
arguments they exercise (``out_indices``, ``frozen_stages``, ...).
"""
import math
import re
import os.path as osp
import subprocess
import sys

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from mmext.utils.checkpoint import key_mismatch

ODD_SIZES = ((97, 131), (511, 673))
STRIDES = (4, 8, 16, 32)
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def count_params(model):
    return sum(p.numel() for p in model.parameters())


def _expected(key, patterns):
    return any(re.search(p, key) for p in patterns)


def check_out_shapes(build, channels, sizes=ODD_SIZES, strides=STRIDES, batch=1):
    """Stride-``s`` maps of ``ceil(H / s) x ceil(W / s)`` with the given
    channels for every (odd) input size, and ``out_indices`` picks stages."""
    model = build().eval()
    for h, w in sizes:
        with torch.no_grad():
            outs = model(torch.randn(batch, 3, h, w))
        assert len(outs) == len(channels)
        for out, c, s in zip(outs, channels, strides):
            assert tuple(out.shape) == (batch, c, math.ceil(h / s), math.ceil(w / s)), \
                ((h, w), s, tuple(out.shape))
    model = build(out_indices=(1, 3)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *sizes[0]))
    assert [o.shape[1] for o in outs] == [channels[1], channels[3]]


def check_gradients_and_bf16(build, size=(97, 131)):
    """Every parameter gets a finite gradient from the four outputs (batch 2,
    train mode); a bf16 autocast forward has no NaN."""
    model = build().train()
    x = torch.randn(2, 3, *size)
    outs = model(x)
    sum((o.float()**2).mean() for o in outs).backward()
    bad = [n for n, p in model.named_parameters()
           if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
    assert not bad, f'no / non-finite gradient for {bad[:10]}'
    model.eval()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(x)
    assert all(not torch.isnan(o.float()).any() for o in outs)


def check_frozen_stages_and_norm_eval(build, frozen=1, size=(64, 96)):
    """``frozen_stages`` freezes exactly the modules of the first stages (no
    gradient, eval mode, also after ``train()``); ``norm_eval`` keeps every
    BatchNorm in eval mode; the other parameters still train."""
    model = build(frozen_stages=frozen).train()
    frozen_params = {id(p) for i in range(frozen) for m in model.stage_modules(i)
                     for p in m.parameters()}
    assert frozen_params, 'stage_modules(0) holds no parameters'
    for i in range(frozen):
        for m in model.stage_modules(i):
            assert all(not sub.training for sub in m.modules())
    for p in model.parameters():
        assert p.requires_grad == (id(p) not in frozen_params)
    outs = model(torch.randn(2, 3, *size))
    sum(o.sum() for o in outs).backward()
    assert all(p.grad is None for p in model.parameters() if id(p) in frozen_params)
    assert any(p.grad is not None for p in model.parameters() if id(p) not in frozen_params)
    model = build(norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert all(not m.training for m in bns)
    assert model.training


def check_with_cp_and_drop_path(build, size=(64, 96)):
    """Checkpointing changes neither outputs nor gradients; a positive
    ``drop_path_rate`` makes training forwards stochastic and leaves eval
    deterministic."""
    torch.manual_seed(0)
    ref = build().train()
    cpm = build(with_cp=True).train()
    cpm.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, *size)
    outs_ref, outs_cp = ref(x), cpm(x)
    for a, b in zip(outs_ref, outs_cp):
        torch.testing.assert_close(a, b)
    sum(o.sum() for o in outs_ref).backward()
    sum(o.sum() for o in outs_cp).backward()
    for (n, a), b in zip(ref.named_parameters(), cpm.parameters()):
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, msg=n)
    dp = build(drop_path_rate=0.5)
    dp.train()
    with torch.no_grad():
        a, b = dp(x)[-1], dp(x)[-1]
    assert not torch.allclose(a, b)
    dp.eval()
    with torch.no_grad():
        torch.testing.assert_close(dp(x)[-1], dp(x)[-1])


def check_dense_backbone(build, channels, sizes=ODD_SIZES):
    """All of the above for one variant."""
    check_out_shapes(build, channels, sizes)
    check_gradients_and_bf16(build)
    check_frozen_stages_and_norm_eval(build)
    check_with_cp_and_drop_path(build)


def same_names_as(pattern):
    """``to_official`` for a design whose modules keep the official names:
    the identity, once every key is checked against ``pattern`` (a regex of
    the documented official layout)."""
    regex = re.compile(pattern)

    def to_official(state_dict):
        bad = [k for k in state_dict if not regex.match(k)]
        assert not bad, f'keys outside the documented official layout: {bad[:5]}'
        return dict(state_dict)

    return to_official


def check_official_checkpoint(build, to_official, tmp_path, type_name, arch,
                              classifier=None, expected_missing=()):
    """An official-layout checkpoint loads through ``init_cfg`` (three
    containers) and through the converter CLI.

    Args:
        build: as above; called with ``init_cfg=...``.
        to_official (callable): mmext state dict -> the official key layout
            (written in the test from ../shared/checkpoint_layouts.md).
        classifier (dict): classification-only tensors the official file
            also holds (they must be dropped silently).
        expected_missing (Sequence[str]): regexes of the model keys an
            official classification file lacks.
    """
    src = build()
    src.init_weights()
    ref = {k: v.clone() for k, v in src.state_dict().items()}
    official = to_official({k: v for k, v in ref.items()
                            if not _expected(k, expected_missing)})
    official.update(classifier or {})
    containers = {
        'state_dict': {'state_dict': official, 'meta': {}},
        'model': {'model': {'module.' + k: v for k, v in official.items()}},
        'raw': official,
    }
    for kind, obj in containers.items():
        path = tmp_path / f'official_{kind}.pth'
        torch.save(obj, path)
        dst = build(init_cfg=dict(type='Pretrained', checkpoint=str(path)))
        report = dst.load_pretrained(str(path))
        assert report['missing'] == [] and report['unexpected'] == [], (kind, report)
        for k, v in dst.state_dict().items():
            if _expected(k, expected_missing):
                continue
            torch.testing.assert_close(v, ref[k], msg=f'{kind}: {k}')
        dst2 = build(init_cfg=dict(type='Pretrained', checkpoint=str(path)))
        dst2.init_weights()
        for k, v in dst2.state_dict().items():
            if not _expected(k, expected_missing):
                torch.testing.assert_close(v, ref[k], msg=f'init_weights {kind}: {k}')
    out = tmp_path / 'converted.pth'
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'model_converters', 'convert_official.py'),
           type_name, str(tmp_path / 'official_raw.pth'), str(out)]
    if arch is not None:
        cmd += ['--arch', str(arch)]
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
    converted = torch.load(out, map_location='cpu')['state_dict']
    model = build()
    missing, unexpected = key_mismatch(model, converted)
    assert not unexpected, unexpected
    assert all(_expected(k, expected_missing) for k in missing), missing
    for k, v in converted.items():
        torch.testing.assert_close(v, ref[k], msg=k)
