"""Contract checks shared by every mmext backbone (run for each registered
one by ``tests/test_backbone_contract.py``), and checkpoint helpers for the
per-design tests.

``build(**overrides)`` is a callable returning a fresh backbone (e.g.
``functools.partial(VAN, **VAN.backbone_examples[0])``); the checks pass it
the arguments they exercise (``out_indices``, ``frozen_stages``, ...). The
widths and strides are read from the model's ``out_channels`` /
``out_strides``, the attribute every mmext backbone declares.
"""
import inspect
import math
import re
import os.path as osp
import subprocess
import sys

import torch
import torch.nn as nn
from design_checks import assert_all_grads
from torch.nn.modules.batchnorm import _BatchNorm

from mmext.utils.checkpoint import key_mismatch

# Odd, one taller than wide and one wider than tall; the large one reaches
# the size-dependent paths (window padding, resized position tables, global
# filters larger than stored).
ODD_SIZES = ((97, 131), (67, 45), (255, 321))
SMALL_ODD = (35, 51)
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def count_params(model):
    return sum(p.numel() for p in model.parameters())


def _expected(key, patterns):
    return any(re.search(p, key) for p in patterns)


def _loss(outs):
    return sum((o.float()**2).mean() for o in outs)


def check_declared_widths(model):
    """``out_channels`` / ``out_strides``: one int per stage, strides
    increasing."""
    n = model.num_stages
    for attr in ('out_channels', 'out_strides'):
        value = getattr(model, attr, None)
        assert isinstance(value, tuple) and len(value) == n and all(
            isinstance(v, int) and v > 0 for v in value), (type(model).__name__, attr, value)
    assert list(model.out_strides) == sorted(model.out_strides), model.out_strides


def check_out_shapes(build, sizes=ODD_SIZES, batch=1):
    """A tuple of one ``(N, out_channels[i], ceil(H / out_strides[i]),
    ceil(W / out_strides[i]))`` map per entry ``i`` of ``out_indices`` at
    every (odd) input size, also when ``out_indices`` picks two stages."""
    model = build().eval()
    check_declared_widths(model)
    last = model.num_stages - 1
    for out_indices, sizes_ in ((model.out_indices, sizes), ((1, last), sizes[:1])):
        if out_indices != model.out_indices:
            model = build(out_indices=out_indices).eval()
            assert model.out_indices == out_indices
        for h, w in sizes_:
            with torch.no_grad():
                outs = model(torch.randn(batch, 3, h, w))
            assert isinstance(outs, tuple) and len(outs) == len(out_indices), (
                out_indices, type(outs), len(outs))
            for out, i in zip(outs, out_indices):
                c, s = model.out_channels[i], model.out_strides[i]
                expected = (batch, c, math.ceil(h / s), math.ceil(w / s))
                assert tuple(out.shape) == expected, (
                    f'input {h}x{w}, stage {i}: output {tuple(out.shape)}, but out_channels[{i}]'
                    f'={c} and out_strides[{i}]={s} declare {expected} (ceil(H/s), ceil(W/s))')


def check_gradients_and_bf16(build, size=SMALL_ODD):
    """Every parameter gets a finite, somewhere non-zero gradient from the
    outputs (batch 2, train mode); a bf16 autocast forward has no NaN."""
    # Seeded: with an unseeded draw a small SE example can start with every
    # ReLU of its squeeze closed (CI saw layer1.0.se.conv1 get no gradient
    # once in three runs, depending on the worker's RNG state).
    torch.manual_seed(0)
    model = build().train()
    x = torch.randn(2, 3, *size)
    assert_all_grads(model, model(x))
    model.eval()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(x)
    assert all(not torch.isnan(o.float()).any() for o in outs)


def tiny_resnet_host(type_, depth, **kwargs):
    """An mmext ResNet-family host (``mmext.ResNet`` / ``ResNetV1c`` /
    ``ResNeXt``) at 8 base channels; ``norm_eval=False`` as the configs of
    designs that add norms inside the blocks (mmdet's default True would hold
    those at their initial statistics)."""
    from mmext.registry import MODELS
    extra = dict(groups=2, base_width=4) if type_ == 'mmext.ResNeXt' else {}
    return MODELS.build(dict(type=type_, depth=depth, base_channels=8, stem_channels=8,
                             norm_eval=False, **extra, **kwargs))


def check_block_convs(model, cls):
    """A host built with ``block_conv_cfg``: every block convolution (two per
    BasicBlock, three per Bottleneck) is a ``cls``; the stem and the
    downsample shortcuts stay ``nn.Conv2d``. Returns the ``cls`` modules."""
    convs = [m for m in model.modules() if isinstance(m, cls)]
    per_block = 2 if model.block.expansion == 1 else 3
    assert len(convs) == per_block * sum(model.stage_blocks), (len(convs), model.stage_blocks)
    plain = [n for n, m in model.named_modules() if type(m) is nn.Conv2d]
    assert plain and all(n.startswith('stem') or n == 'conv1' or '.downsample.' in n
                         for n in plain), plain
    return convs


def check_one_image_trains(model, weights, size=(37, 45),
                           shapes=((10, 12), (5, 6), (3, 3), (2, 2))):
    """One image in train mode gives stage maps of ``shapes`` (H, W) and a
    non-zero gradient to the ``weight`` of every module in ``weights``; an
    eval forward under bf16 autocast has no NaN."""
    model.train()
    x = torch.randn(1, 3, *size)
    outs = model(x)
    assert [tuple(o.shape[-2:]) for o in outs] == list(shapes)
    sum(o.square().mean() for o in outs).backward()
    assert all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in weights)
    model.eval()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        assert not any(torch.isnan(o).any() for o in model(x))


def _frozen_ids(model, frozen):
    return {id(p) for i in range(frozen) for m in model.stage_modules(i) for p in m.parameters()}


def _assert_frozen(model, frozen, when):
    ids = _frozen_ids(model, frozen)
    assert ids, f'stage_modules(0) holds no parameters ({when})'
    wrong = [n for n, p in model.named_parameters() if p.requires_grad == (id(p) in ids)]
    assert not wrong, f'requires_grad wrong {when} for {wrong[:5]}'
    # A convolution's or linear layer's mode changes nothing (mmdet's ResNet
    # leaves its stem conv's as it is); every other module must be in eval.
    training = [type(sub).__name__ for i in range(frozen) for m in model.stage_modules(i)
                for sub in m.modules()
                if sub.training and not isinstance(sub, (nn.modules.conv._ConvNd, nn.Linear))]
    assert not training, f'frozen modules in training mode {when}: {training[:5]}'
    return ids


def check_frozen_stages_and_norm_eval(build, tmp_path, frozen=1, size=SMALL_ODD):
    """``frozen_stages`` freezes exactly the modules of the first stages (no
    gradient, eval mode) as soon as the model is built, after ``train()``
    and after ``init_weights`` loads a checkpoint; ``frozen_stages =
    num_stages`` freezes every parameter (``stage_modules`` misses none);
    ``norm_eval`` keeps every BatchNorm in eval mode; the other parameters
    still train."""
    model = build(frozen_stages=frozen)
    _assert_frozen(model, frozen, 'at build')
    model.train()
    ids = _assert_frozen(model, frozen, 'after train()')
    _loss(model(torch.randn(2, 3, *size))).backward()
    assert all(p.grad is None for p in model.parameters() if id(p) in ids)
    assert any(p.grad is not None for p in model.parameters() if id(p) not in ids)
    path = tmp_path / 'weights.pth'
    torch.save(model.state_dict(), path)
    loaded = build(frozen_stages=frozen, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    loaded.init_weights()
    _assert_frozen(loaded, frozen, 'after init_weights() loaded a checkpoint')
    everything = build(frozen_stages=model.num_stages)
    assert not [n for n, p in everything.named_parameters() if p.requires_grad], \
        'frozen_stages=num_stages leaves parameters trainable: stage_modules misses them'
    model = build(norm_eval=True).train()
    assert all(not m.training for m in model.modules() if isinstance(m, _BatchNorm))
    assert model.training


def check_with_cp_and_drop_path(build, size=SMALL_ODD):
    """Checkpointing changes neither outputs nor gradients; where the class
    takes ``drop_path_rate``, a positive one makes training forwards
    stochastic and leaves eval deterministic."""
    torch.manual_seed(0)
    ref = build().train()
    cpm = build(with_cp=True).train()
    cpm.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, *size)
    outs_ref, outs_cp = ref(x), cpm(x)
    for a, b in zip(outs_ref, outs_cp):
        torch.testing.assert_close(a, b)
    _loss(outs_ref).backward()
    _loss(outs_cp).backward()
    for (n, a), b in zip(ref.named_parameters(), cpm.parameters()):
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, msg=n)
    if 'drop_path_rate' not in inspect.signature(type(ref)).parameters:
        return
    dp = build(drop_path_rate=0.5)
    dp.train()
    with torch.no_grad():
        a, b = dp(x)[-1], dp(x)[-1]
    assert not torch.allclose(a, b)
    dp.eval()
    with torch.no_grad():
        torch.testing.assert_close(dp(x)[-1], dp(x)[-1])


def check_stage_arg_errors(build):
    """Bad ``out_indices`` / ``frozen_stages`` are refused when the model is
    built, with a message naming the class, the argument, the value and the
    allowed range."""
    import pytest
    model = build()
    name, n = type(model).__name__, model.num_stages
    for kwargs, value in ((dict(out_indices=(0, n)), f'(0, {n})'),
                          (dict(out_indices=(1, 1)), '(1, 1)'),
                          (dict(out_indices=(2, 0)), '(2, 0)'),
                          (dict(out_indices=3), '3'),
                          (dict(out_indices=('0', )), "('0',)"),
                          (dict(out_indices=()), '()'),
                          (dict(frozen_stages=n + 1), str(n + 1)),
                          (dict(frozen_stages=-2), '-2')):
        arg = next(iter(kwargs))
        with pytest.raises(ValueError) as err:
            build(**kwargs)
        msg = str(err.value)
        allowed = f'[-1, {n}]' if arg == 'frozen_stages' else f'[0, {n - 1}]'
        for part in (name, f'{arg}={value}', allowed):
            assert part in msg, (kwargs, part, msg)


def check_one_image(build, size=SMALL_ODD):
    """At one image per device a training step either runs or stops with
    mmext's one-line error naming the fixes (tests/design_checks.py); in the
    latter case ``norm_eval=True``, one of the fixes it names, trains."""
    from design_checks import run_or_one_value_error
    x = torch.randn(1, 3, *size)
    msg = run_or_one_value_error(build(), x)
    if msg is not None:
        assert run_or_one_value_error(build(norm_eval=True), x) is None, msg


def check_backbone_contract(build, tmp_path, sizes=ODD_SIZES):
    """All of the above for one instance."""
    check_out_shapes(build, sizes)
    check_gradients_and_bf16(build)
    check_frozen_stages_and_norm_eval(build, tmp_path)
    check_with_cp_and_drop_path(build)
    check_stage_arg_errors(build)
    check_one_image(build)


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
    proc = subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, text=True)
    converted = torch.load(out, map_location='cpu')['state_dict']
    model = build()
    missing, unexpected = key_mismatch(model, converted)
    assert not unexpected, unexpected
    assert all(_expected(k, expected_missing) for k in missing), missing
    if 'missing:' in proc.stdout and all(
            _expected(k, getattr(model, 'expected_missing', ())) for k in missing):
        # Keys the design declares absent from official files are stated, not listed.
        assert 'missing: none' in proc.stdout, proc.stdout
    for k, v in converted.items():
        torch.testing.assert_close(v, ref[k], msg=k)
