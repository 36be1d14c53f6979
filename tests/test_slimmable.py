"""MutualNet / US-Net slimmable layers and hosts (mmext/models/layers/slimmable.py).

The width-w subnet is checked against plain ``nn.Conv2d`` / ``nn.BatchNorm2d``
layers built at the widths the subnet runs at and loaded with the leading
slices of the full weights (no slimmable code in the reference), and its widths
against the official rounding rule computed by hand.
"""
import copy
import functools

import pytest
import torch
import torch.nn as nn
from backbone_checks import check_frozen_stages_and_norm_eval, check_with_cp_and_drop_path
from design_checks import ODD_SIZE, randomize, randomize_norms
from mmdet.models.necks import FPN

import mmext.models  # noqa: F401  (registration)
from mmext.models.layers.slimmable import (SlimmableBatchNorm2d, SlimmableConv2d, calibrate_bn,
                                           make_divisible, set_width_mult, slim_channels,
                                           width_mult, width_mult_list_of)
from mmext.registry import MODELS

WIDTHS = [0.7, 0.85, 1.0]


def build(type_='mmext.ResNet', depth=50, base_channels=16, widths=WIDTHS, **kwargs):
    kwargs.setdefault('stem_channels', base_channels)
    return MODELS.build(dict(type=type_, depth=depth, base_channels=base_channels,
                             slimmable=dict(width_mult_list=widths), **kwargs))


def plain_copy(model, x):
    """``model`` (eval mode, at its width) with every slimmable conv / BN
    replaced by a plain layer of the channels it runs at on ``x``, holding the
    leading slices of its weights and of the width's statistics."""
    seen = {}

    def record(m, i, o):
        seen[m] = (i[0].shape[1], o.shape[1])

    hooks = [m.register_forward_hook(record)
             for m in model.modules() if isinstance(m, (SlimmableConv2d, SlimmableBatchNorm2d))]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    ref = copy.deepcopy(model)
    originals = dict(zip(ref.modules(), model.modules()))
    for name, m in list(ref.named_modules()):
        if not isinstance(m, (SlimmableConv2d, SlimmableBatchNorm2d)):
            continue
        c_in, c_out = seen[originals[m]]
        if isinstance(m, SlimmableConv2d):
            groups = c_in if m.depthwise else 1
            new = nn.Conv2d(c_in, c_out, m.kernel_size, m.stride, m.padding, m.dilation, groups,
                            bias=m.bias is not None)
            new.weight.data.copy_(m.weight[:c_out, :c_in // groups])
            if m.bias is not None:
                new.bias.data.copy_(m.bias[:c_out])
        else:
            mean, var, _ = m.width_stats(m.width_mult)
            new = nn.BatchNorm2d(c_out, eps=m.eps).eval()
            new.weight.data.copy_(m.weight[:c_out])
            new.bias.data.copy_(m.bias[:c_out])
            new.running_mean.copy_(mean[:c_out])
            new.running_var.copy_(var[:c_out])
        parent, _, attr = name.rpartition('.')
        setattr(ref.get_submodule(parent) if parent else ref, attr, new)
    assert not [m for m in ref.modules() if isinstance(m, (SlimmableConv2d,
                                                           SlimmableBatchNorm2d))]
    return ref


def randomized(model):
    randomize(model)
    randomize_norms(model, seed=1)
    return perturb_stats(model).eval()


def perturb_stats(model):
    for m in model.modules():
        if isinstance(m, SlimmableBatchNorm2d):
            for w in m.width_mult_list:
                mean, var, _ = m.width_stats(w)
                mean.normal_(0, 0.2)
                var.uniform_(0.5, 2)
    return model


def test_make_divisible_is_the_official_rule():
    # US-Net / MutualNet slimmable_ops.make_divisible, computed by hand.
    assert make_divisible(44.8) == 48 and make_divisible(179.2) == 176
    assert make_divisible(358.4) == 360 and make_divisible(89.6) == 88
    assert make_divisible(3.0) == 8  # min_value=None: the divisor
    assert make_divisible(3.0, min_value=1) == 9  # the official call: 0 < 0.9 v, + 8
    # Bottleneck ratio 1/4: the inner width is a quarter of the output's.
    assert slim_channels(16, 0.7, 0.25) == 12 and slim_channels(64, 0.7, 1) == 48
    assert slim_channels(60, 1.0) == 60  # full width is the layer's own
    assert slim_channels(4, 0.5) == 4  # never above the layer's width


@pytest.mark.parametrize('kwargs', [
    dict(depth=50),
    dict(depth=18, plugins=[dict(cfg=dict(type='mmext.SE', ratio=4), position='after_conv2')]),
    dict(type_='mmext.ResNetV1d', depth=18),
    dict(type_='mmext.SlimmableMobileNetV2', widen_factor=0.5),
], ids=['r50', 'r18-se', 'v1d-r18', 'mobilenetv2'])
def test_subnet_is_the_leading_channels_of_the_full_weights(kwargs):
    if kwargs.get('type_') == 'mmext.SlimmableMobileNetV2':
        model = MODELS.build(dict(type='mmext.SlimmableMobileNetV2', widen_factor=0.5,
                                  slimmable=dict(width_mult_list=WIDTHS)))
    else:
        model = build(**kwargs)
    model = randomized(model)
    x = torch.randn(2, 3, 33, 41)
    set_width_mult(model, 0.7)
    ref = plain_copy(model, x)
    with torch.no_grad():
        outs, ref_outs = model(x), ref(x)
    for o, r in zip(outs, ref_outs):
        assert o.shape == r.shape
        torch.testing.assert_close(o, r, rtol=1e-4, atol=1e-4)
    if kwargs == dict(depth=50):
        # The official rule by hand: outputs make_divisible(64 * 2**i * 0.7).
        assert [o.shape[1] for o in outs] == [48, 88, 176, 360]
        # ... and the inner widths a quarter of them (ratio 1/4).
        assert model.layer4[0].conv2(torch.randn(1, 90, 3, 3)).shape[1] == 90
        seen = []
        h = model.layer1[0].conv1.register_forward_hook(lambda m, i, o: seen.append(o.shape[1]))
        model(x)
        h.remove()
        assert seen == [12]
    # Weight sharing, not copies: the subnet's gradient lands on the leading
    # slice of the full weight only.
    model.train()
    conv = next(m for m in model.modules() if isinstance(m, SlimmableConv2d) and not m.depthwise
                and m.active_out_channels() < m.out_channels)
    model.zero_grad()
    sum(o.sum() for o in model(x)).backward()
    c_out = conv.active_out_channels()
    assert conv.weight.grad[c_out:].abs().sum() == 0
    assert conv.weight.grad[:c_out].abs().sum() > 0


def test_per_width_bn_statistics_are_kept_apart():
    model = build(depth=18, norm_eval=False)
    bn = model.layer2[0].bn1
    assert isinstance(bn, SlimmableBatchNorm2d) and width_mult_list_of(model) == (0.7, 0.85, 1.0)
    before = {w: [t.clone() for t in bn.width_stats(w)[:2]] for w in WIDTHS}
    model.train()
    with width_mult(model, 0.7):
        model(torch.randn(2, 3, 35, 51))
    assert bn.width_mult == 1.0  # the context manager restored the width
    changed = {w: not all(torch.equal(a, b) for a, b in zip(before[w], bn.width_stats(w)[:2]))
               for w in WIDTHS}
    assert changed == {0.7: True, 0.85: False, 1.0: False}
    c = slim_channels(32, 0.7)  # layer2 width 32 at 0.7: 24
    assert c == 24
    # Only the active width's leading entries move.
    assert torch.equal(bn.width_stats(0.7)[0][c:], before[0.7][0][c:])
    assert int(bn.width_stats(0.7)[2]) == 1
    # The affine parameters are shared: one weight for all widths.
    assert [n for n, _ in bn.named_parameters()] == ['weight', 'bias']
    # Eval at a width without statistics is refused in one line; calibration makes it run.
    model.eval()
    set_width_mult(model, 0.8)
    with pytest.raises(RuntimeError, match='no BN statistics for width_mult=0.8'):
        model(torch.randn(1, 3, 35, 51))
    calibrate_bn(model, [torch.randn(2, 3, 35, 51)], 0.8)
    model(torch.randn(1, 3, 35, 51))


def test_calibrate_bn_recomputes_the_cumulative_average():
    model = randomized(build(depth=18))
    batches = [torch.randn(2, 3, 33, 41) for _ in range(3)]
    # Direct computation: the BN inputs of each batch (batch statistics in
    # every BN, as calibration runs them), their mean and unbiased variance.
    bn = model.layer3[1].bn2
    inputs = []
    h = bn.register_forward_pre_hook(lambda m, i: inputs.append(i[0].detach().clone()))
    set_width_mult(model, 0.85)
    for m in model.modules():
        if isinstance(m, SlimmableBatchNorm2d):
            m.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    h.remove()
    c = inputs[0].shape[1]
    mean = torch.stack([i.mean((0, 2, 3)) for i in inputs]).mean(0)
    var = torch.stack([i.transpose(0, 1).reshape(c, -1).var(1) for i in inputs]).mean(0)
    # Perturb every width's statistics, then calibrate 0.85 only.
    model.eval()
    perturb_stats(model)
    other = [t.clone() for t in bn.width_stats(0.7)[:2]]
    set_width_mult(model, 1.0)
    used = calibrate_bn(model, iter(batches + batches), 0.85, num_batches=3)
    assert used == 3 and bn.width_mult == 1.0 and not bn.training and bn.momentum == 0.1
    got_mean, got_var, count = bn.width_stats(0.85)
    torch.testing.assert_close(got_mean[:c], mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got_var[:c], var, rtol=1e-4, atol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(other, bn.width_stats(0.7)[:2]))
    # The resize of the official loop: 0.5 of 33 x 41 is 17 x 21.
    sizes = []
    h = model.register_forward_pre_hook(lambda m, i: sizes.append(tuple(i[0].shape[-2:])))
    calibrate_bn(model, batches, 0.7, resize=0.5, num_batches=1)
    h.remove()
    assert sizes == [(17, 21)]
    with pytest.raises(ValueError, match='num_batches=0'):
        calibrate_bn(model, batches, 0.7, num_batches=0)


@pytest.mark.parametrize('kwargs', [dict(depth=50), dict(type_='mmext.ResNetV1c', depth=18)],
                         ids=['r50', 'v1c-r18'])
def test_odd_size_three_widths_bf16_and_batch_one(kwargs):
    model = build(**kwargs).train()
    x = torch.randn(1, 3, *ODD_SIZE)
    full = model.out_channels
    for w in (0.7, 0.85, 1.0):
        set_width_mult(model, w)
        outs = model(x)
        assert [tuple(o.shape[2:]) for o in outs] == [(25, 33), (13, 17), (7, 9), (4, 5)]
        assert [o.shape[1] for o in outs] == [slim_channels(c, w) for c in full]
        sum(o.mean() for o in outs).backward()
    set_width_mult(model, 0.7)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(torch.randn(2, 3, 35, 51))
    assert all(o.dtype == torch.bfloat16 and torch.isfinite(o.float()).all() for o in outs)


def test_frozen_stages_norm_eval_and_a_full_width_checkpoint(tmp_path):
    check_frozen_stages_and_norm_eval(functools.partial(build, depth=18), tmp_path)
    # norm_eval: training at a sub-width leaves its statistics alone.
    model = build(depth=18, norm_eval=True).train()
    set_width_mult(model, 0.7)
    before = model.layer1[0].bn1.width_stats(0.7)[0].clone()
    model(torch.randn(2, 3, 35, 51))
    assert torch.equal(before, model.layer1[0].bn1.width_stats(0.7)[0])
    # A plain mmext.ResNet checkpoint loads strictly; full width = the plain model.
    plain = randomize_norms(randomize(MODELS.build(
        dict(type='mmext.ResNet', depth=18, base_channels=16, stem_channels=16)))).eval()
    slim = build(depth=18).eval()
    slim.load_state_dict(plain.state_dict(), strict=True)
    x = torch.randn(1, 3, 35, 51)
    with torch.no_grad():
        for o, r in zip(slim(x), plain(x)):
            torch.testing.assert_close(o, r)
    # Each width starts from the full-width statistics.
    bn = slim.layer2[1].bn2
    assert torch.equal(bn.width_stats(0.7)[0], plain.layer2[1].bn2.running_mean)
    # ... and the slimmable state dict adds exactly the per-width buffers.
    norms = [n[:-len('running_mean')] for n in plain.state_dict() if n.endswith('running_mean')]
    assert set(slim.state_dict()) - set(plain.state_dict()) == {
        f'{n}{k}_{w}' for n in norms for w in ('w0_7', 'w0_85')
        for k in ('running_mean', 'running_var', 'num_batches_tracked')}

def test_sub_width_with_cp_drop_path_and_a_frozen_mobilenetv2():
    # At width 0.7: checkpointing changes nothing, drop path stays stochastic
    # in training and deterministic in eval.
    check_with_cp_and_drop_path(lambda **kwargs: MODELS.build(dict(
        type='mmext.ResNet', depth=18, base_channels=16, stem_channels=16,
        slimmable=dict(width_mult_list=[0.7], width_mult=0.7), **kwargs)))
    model = MODELS.build(dict(type='mmext.SlimmableMobileNetV2', widen_factor=0.5,
                              frozen_stages=2, norm_eval=True)).train()
    frozen = [model.conv1, model.layer1, model.layer2]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(not m.training for m in model.modules() if isinstance(m, SlimmableBatchNorm2d))
    set_width_mult(model, 0.7)
    sum(o.mean() for o in model(torch.randn(1, 3, 35, 51))).backward()
    assert model.layer3[0].expand_conv.conv.weight.grad is not None
    assert model.layer2[0].expand_conv.conv.weight.grad is None


def test_errors_name_the_module_and_the_option():
    with pytest.raises(ValueError, match=r'ResNeXt: slimmable is not defined for layer1\.0\.conv2'):
        MODELS.build(dict(type='mmext.ResNeXt', depth=50, groups=4, base_width=4,
                          base_channels=8, stem_channels=16,
                          slimmable=dict(width_mult_list=[0.7])))
    with pytest.raises(ValueError, match=r'slimmable is not defined for layer1\.0\.conv1 '
                                         r'\(ODConv\)'):
        build(depth=18, block_conv_cfg=dict(type='mmext.ODConv'))
    with pytest.raises(ValueError, match=r'slimmable\.width_mult_list=1\.5'):
        build(depth=18, widths=[0.5, 1.5])
    with pytest.raises(ValueError, match='expected dict'):
        MODELS.build(dict(type='mmext.ResNet', depth=18, slimmable=dict(widths=[0.5])))
    with pytest.raises(ValueError, match='width_mult=0'):
        set_width_mult(build(depth=18), 0)


def _sliced_plain_fpn(fpn, in_channels, active):
    """mmdet FPN built for ``active`` input channels, loaded with the leading
    input columns of ``fpn``'s lateral (and input extra) convs."""
    ref = FPN(active, fpn.out_channels, fpn.num_outs, add_extra_convs=fpn.add_extra_convs)
    state = {}
    for k, v in fpn.state_dict().items():
        target = ref.state_dict()[k]
        state[k] = v[:, :target.shape[1]] if v.dim() == 4 else v
    ref.load_state_dict(state)
    return ref


def test_neck_and_heads_slice_their_inputs():
    in_channels, active = [16, 32, 64], [12, 24, 48]
    fpn = randomize(MODELS.build(dict(type='mmext.SlimmableFPN', in_channels=in_channels,
                                      out_channels=8, num_outs=5,
                                      add_extra_convs='on_input')))
    # The plain FPN's checkpoint loads strictly.
    fpn.load_state_dict(FPN(in_channels, 8, 5, add_extra_convs='on_input').state_dict()
                        | fpn.state_dict(), strict=True)
    ref = _sliced_plain_fpn(fpn, in_channels, active)
    feats = [torch.randn(1, c, s, s) for c, s in zip(active, (16, 8, 4))]
    for o, r in zip(fpn(feats), ref(feats)):
        torch.testing.assert_close(o, r)
    # UperNet heads: the PPM bottleneck and FCN's concat_input read the
    # sliced feature's leading columns and every other column.
    from mmseg.models.decode_heads import FCNHead, UPerHead
    head = randomized(MODELS.build(dict(
        type='mmext.SlimmableUPerHead', in_channels=in_channels, in_index=[0, 1, 2],
        channels=8, pool_scales=(1, 2), num_classes=3)))
    ref = UPerHead(in_channels=active, in_index=[0, 1, 2], channels=8, pool_scales=(1, 2),
                   num_classes=3).eval()
    aux = randomized(MODELS.build(dict(type='mmext.SlimmableFCNHead', in_channels=64,
                                       in_index=2, channels=8, num_convs=1, concat_input=True,
                                       num_classes=3)))
    aux_ref = FCNHead(in_channels=48, in_index=2, channels=8, num_convs=1, concat_input=True,
                      num_classes=3).eval()
    for full, plain, lead in ((head, ref, 64), (aux, aux_ref, 64)):
        state = {}
        for k, v in full.state_dict().items():
            target = plain.state_dict()[k]
            if v.dim() == 4 and k in ('bottleneck.conv.weight', 'conv_cat.conv.weight'):
                # [sliced feature | unsliced channels]
                keep = target.shape[1] - (v.shape[1] - lead)
                v = torch.cat([v[:, :keep], v[:, lead:]], 1)
            elif v.dim() == 4:
                v = v[:, :target.shape[1]]
            state[k] = v
        plain.load_state_dict(state)
        with torch.no_grad():
            torch.testing.assert_close(full(feats), plain(feats))


def test_syncbn_becomes_a_per_process_slimmable_bn():
    model = build(depth=18, norm_cfg=dict(type='SyncBN'), norm_eval=False).train()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and all(type(m) is SlimmableBatchNorm2d for m in norms)
    set_width_mult(model, 0.7)
    model(torch.randn(2, 3, 35, 51))  # torch's SyncBatchNorm has no CPU path


def test_reachable_from_mmdet_and_mmseg_configs():
    from mmdet.registry import MODELS as DET
    from mmseg.registry import MODELS as SEG
    for registry in (DET, SEG):
        m = registry.build(dict(type='mmext.SlimmableMobileNetV2', widen_factor=0.35,
                                slimmable=dict(width_mult_list=[0.7], width_mult=0.7)))
        assert m.slimmable == dict(width_mult_list=(0.7, 1.0), width_mult=0.7)
        assert registry.get('mmext.SlimmableFPN') is not None
