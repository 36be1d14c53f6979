"""Regularizers as config switches: stochastic depth (``drop_path_rate``) on
every ResNet-family host, DropBlock as a plugin with its schedule hook, and
label smoothing for the RetinaNet / Mask R-CNN / UperNet classification
losses."""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from design_checks import ODD_SIZE
from mmdet.models.layers import DropBlock as MMDetDropBlock
from timm.layers import DropPath

import mmext.models  # noqa: F401  (registration)
from mmext.engine import DropBlockScheduleHook
from mmext.models.backbones import RMResNet, SDAResNet
from mmext.models.backbones.resnet import ResNet, ResNetV1c, ResNeXt
from mmext.models.layers import MinBlock
from mmext.models.losses import LabelSmoothingCrossEntropyLoss, LabelSmoothingFocalLoss
from mmext.models.plugins import DropBlock

SMALL = dict(base_channels=8, stem_channels=16)
# One small instance of every ResNet-family host, and its number of blocks.
HOSTS = {
    'ResNet-18': (lambda **kw: ResNet(18, **SMALL, **kw), 8),
    'ResNet-50': (lambda **kw: ResNet(50, **SMALL, **kw), 16),
    'ResNetV1c-18': (lambda **kw: ResNetV1c(depth=18, **SMALL, **kw), 8),
    'ResNeXt-50': (lambda **kw: ResNeXt(groups=2, base_width=4, depth=50, **SMALL, **kw), 16),
    'SDAResNet-18': (lambda **kw: SDAResNet(18, **SMALL, min_channels=8, **kw), 8),
    'RMResNet-18': (lambda **kw: RMResNet(18, **SMALL, **kw), 8),
}


def blocks_of(model):
    return [layer[j] for name in model.res_layers
            for layer in [getattr(model, name)] for j in range(len(layer))]


def seeded(build, seed=0, **kwargs):
    torch.manual_seed(seed)
    return build(**kwargs)


# --------------------------------------------------------------------------
# DropPath (stochastic depth)
# --------------------------------------------------------------------------


@pytest.mark.parametrize('host', list(HOSTS))
def test_drop_path_rate_zero_leaves_the_host_bit_identical(host):
    build, _ = HOSTS[host]
    plain, zero = seeded(build), seeded(build, drop_path_rate=0.0)
    assert [n for n, _ in plain.named_modules()] == [n for n, _ in zero.named_modules()]
    assert not any('drop_path' in n for n, _ in zero.named_modules())
    for (ka, a), (kb, b) in zip(plain.state_dict().items(), zero.state_dict().items()):
        assert ka == kb and torch.equal(a, b), ka
    x = torch.randn(2, 3, 35, 51)
    for a, b in zip(plain.train()(x), zero.train()(x)):
        assert torch.equal(a, b)


def test_drop_path_rate_zero_equals_mmdets_resnet():
    """The host at rate 0 computes what mmdet's ResNet computes, bit for bit,
    in training (batch statistics) and in eval mode."""
    from mmdet.models.backbones import ResNet as DetResNet
    for depth in (18, 50):
        ours = seeded(lambda: ResNet(depth, base_channels=8, drop_path_rate=0.0))
        ref = DetResNet(depth, base_channels=8)
        ref.load_state_dict(ours.state_dict())
        x = torch.randn(2, 3, 33, 47)
        for mode in (True, False):
            ours.train(mode)
            ref.train(mode)  # mmdet's train() returns None
            for a, b in zip(ours(x), ref(x)):
                assert torch.equal(a, b), (depth, mode)


@pytest.mark.parametrize('host', list(HOSTS))
def test_linear_rule_gives_each_block_its_rate(host):
    build, num_blocks = HOSTS[host]
    model = build(drop_path_rate=0.3)
    blocks = blocks_of(model)
    assert len(blocks) == num_blocks
    for i, block in enumerate(blocks):
        expected = 0.3 * i / (num_blocks - 1)
        drop_path = block._modules.get('drop_path')
        if i == 0:
            assert drop_path is None  # rate 0: nothing added
            continue
        assert isinstance(drop_path, DropPath), (i, type(block))
        assert math.isclose(drop_path.drop_prob, expected, rel_tol=1e-6), (i, drop_path)
    # Parameter-free: the state dict is the one without the option.
    assert model.state_dict().keys() == build().state_dict().keys()


def test_block_cfg_blocks_take_part_when_they_have_a_residual_branch():
    model = ResNet(18, base_channels=8, block_cfg=dict(type='mmext.MinBlock', q=1),
                   block_cfg_blocks='first', drop_path_rate=0.7)
    blocks = blocks_of(model)
    assert [type(b).__name__ for b in blocks[::2]] == ['MinBlock'] * 4
    assert all(math.isclose(b.drop_path.drop_prob, 0.1 * i, rel_tol=1e-6)
               for i, b in enumerate(blocks) if i)
    with pytest.raises(ValueError, match='MGBlock has no residual branch.*drop_path_rate=0'):
        ResNet(18, **SMALL, block_cfg=dict(type='mmext.MGBlock', group_size=4,
                                            mg_fc_channels=4), drop_path_rate=0.1)
    # Rate 0 everywhere: MGBlock hosts build as before.
    ResNet(18, **SMALL, block_cfg=dict(type='mmext.MGBlock', group_size=4, mg_fc_channels=4))
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r'ResNet: drop_path_rate=.*\[0, 1\)'):
            ResNet(18, **SMALL, drop_path_rate=bad)


@pytest.mark.parametrize('host', list(HOSTS))
def test_eval_mode_is_the_identity(host):
    build, _ = HOSTS[host]
    plain, dropped = seeded(build).eval(), seeded(build, drop_path_rate=0.5).eval()
    x = torch.randn(2, 3, 35, 51)
    with torch.no_grad():
        for a, b in zip(plain(x), dropped(x)):
            assert torch.equal(a, b)
    # ... and training is not (the rate reaches the forward).
    with torch.no_grad():
        a, b = plain.train()(x)[-1], dropped.train()(x)[-1]
    assert not torch.allclose(a, b)


def _residual_parts(block, x):
    """(shortcut, branch) of ``block`` at ``x`` in eval mode, and a function
    giving the training-mode output whose branch is dropped."""
    if isinstance(block, MinBlock):
        return block.shortcut(x), block.lower(torch.minimum(
            block.left_dw(block.upper(x)), block.right_dw(block.upper(x)))), block
    identity = x if block.downsample is None else block.downsample(x)
    return identity, block.forward_preact(x) - identity, block.forward_preact


@pytest.mark.parametrize('kind', ['BasicBlock', 'Bottleneck', 'MinBlock'])
def test_drop_path_preserves_the_expected_value(kind):
    """E[block(x)] = shortcut + branch: the mean over n samples of the same
    input lies within 5 standard errors of it. Every sample is either
    ``shortcut`` or ``shortcut + branch / keep`` (one mask per sample, so the
    whole map shares the factor), so the mean is ``shortcut + branch * k /
    (n keep)`` with k ~ Binomial(n, keep): standard error sqrt((1 - keep) /
    (n keep)) of the factor."""
    torch.manual_seed(0)
    if kind == 'MinBlock':
        model = ResNet(18, base_channels=8, block_cfg=dict(type='mmext.MinBlock', q=1),
                       block_cfg_blocks='first', drop_path_rate=0.5)
        block = model.layer4[0]
    else:
        model = ResNet(18 if kind == 'BasicBlock' else 50, **SMALL, drop_path_rate=0.5)
        block = model.layer4[-1]
    keep = 1 - block.drop_path.drop_prob
    block.eval()  # norms on running statistics: the block is a fixed function
    n, c = 4000, block.conv1.in_channels if kind != 'MinBlock' else block.in_channels
    x = torch.rand(1, c, 3, 3)
    with torch.no_grad():
        shortcut, branch, forward = _residual_parts(block, x)
        block.drop_path.train()
        out = forward(x.expand(n, -1, -1, -1))
    # Per sample: the factor on the branch, over the elements where the
    # branch is not ~0 (a ReLU'd branch has exact zeros).
    sel = branch.flatten().abs() > 1e-3 * branch.abs().max()
    factors = (out - shortcut).flatten(1)[:, sel] / branch.flatten()[sel]
    torch.testing.assert_close(factors, factors[:, :1].expand_as(factors), rtol=1e-3, atol=1e-3)
    factors = factors[:, 0]
    dropped = factors.abs() < 1e-3
    torch.testing.assert_close(factors[~dropped], torch.full_like(factors[~dropped], 1 / keep),
                               rtol=1e-3, atol=1e-3)
    assert 0 < dropped.sum() < n
    # The mean over the samples: shortcut + branch * (its mean factor).
    factor = factors.mean().item()
    torch.testing.assert_close(out.mean(0, keepdim=True), shortcut + branch * factor,
                               rtol=1e-3, atol=1e-4)
    assert abs(factor - 1) < 5 * math.sqrt((1 - keep) / (n * keep)), factor


def test_gradients_flow_with_the_regularizers_on():
    torch.manual_seed(0)
    model = _regularized_r50().train()
    out = model(torch.randn(8, 3, 33, 33))
    sum(o.square().mean() for o in out).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_rmresnet_deploy_with_drop_path():
    """deploy() converts in eval mode, where DropPath is the identity: the
    plain network equals the trained-with-drop-path one in eval mode."""
    torch.manual_seed(0)
    model = RMResNet(18, **SMALL, drop_path_rate=0.3)
    x = torch.rand(2, 3, *ODD_SIZE)
    model.train()(x)  # a training step's forward: drop path active, BN stats move
    model.eval()
    with torch.no_grad():
        before = model(x)
        model.deploy()
        after = model(x)
    assert not any('drop_path' in n for n, _ in model.named_modules())
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------
# DropBlock and its schedule hook
# --------------------------------------------------------------------------


def dropblock_plugins(type_='mmext.DropBlock', drop_prob=0.3, block_size=3, stages=(2, 3),
                      **kwargs):
    return [dict(cfg=dict(type=type_, drop_prob=drop_prob, block_size=block_size, **kwargs),
                 position=position, stages=tuple(i in stages for i in range(4)))
            for position in ('after_conv1', 'after_conv2', 'after_conv3')]


def test_mmdets_dropblock_is_a_plugin_of_the_host():
    """mmdet's registered DropBlock needs nothing new as a plugin of
    mmext.ResNet (it swallows the builder's in_channels); three in one block
    get distinct names, which mmdet's own Bottleneck refuses."""
    from mmdet.models.backbones import ResNet as DetResNet
    model = ResNet(50, **SMALL, plugins=dropblock_plugins('mmdet.DropBlock'))
    block = model.layer3[0]
    assert [type(getattr(block, n)) for n in ('drop_block', 'drop_block_1', 'drop_block_2')] \
        == [MMDetDropBlock] * 3
    assert not hasattr(model.layer2[0], 'drop_block')
    out = model.train()(torch.randn(2, 3, 96, 96))
    assert [o.shape[-1] for o in out] == [24, 12, 6, 3]
    with pytest.raises(AssertionError, match='duplicate plugin'):
        DetResNet(50, base_channels=8, plugins=dropblock_plugins('mmdet.DropBlock'))


def test_mmext_dropblock_is_mmdets_on_large_maps_and_clips_on_small_ones():
    x = torch.randn(2, 4, 16, 20)
    ours, ref = DropBlock(4, 0.3, 5, warmup_iters=0), MMDetDropBlock(0.3, 5, warmup_iters=0)
    torch.manual_seed(1)
    a = ours(x)
    torch.manual_seed(1)
    assert torch.equal(a, ref(x))
    assert (a == 0).any()
    # The stride-32 map of a 97x131 input: mmdet's module fails on it.
    small = torch.randn(2, 4, 4, 5)
    with pytest.raises(RuntimeError):
        MMDetDropBlock(0.3, 7, warmup_iters=0)(small)
    clipped = DropBlock(4, 0.3, 7, warmup_iters=0)
    out = clipped(small)
    assert out.shape == small.shape and (out == 0).any() and clipped.block_size == 7
    for side in (1, 2, 3):
        assert DropBlock(4, 0.3, 7, warmup_iters=0)(torch.randn(1, 4, side, 9)).shape[2] == side


def test_dropblock_eval_is_the_identity_and_training_renormalises():
    module = DropBlock(8, drop_prob=0.3, block_size=3, warmup_iters=0)
    x = torch.ones(4, 8, 24, 24)
    assert module.eval()(x) is x
    torch.manual_seed(0)
    out = module.train()(x)
    dropped = (out == 0).float().mean().item()
    assert 0.1 < dropped < 0.5, dropped
    # mmdet's rescaling by units / kept units: the map's sum is preserved.
    torch.testing.assert_close(out.sum(), x.sum(), rtol=1e-5, atol=0)


def _runner(model, it=0, max_iters=100):
    return SimpleNamespace(model=model, iter=it, max_iters=max_iters)


def test_schedule_hook_warm_up_starts_without_a_drop():
    torch.manual_seed(0)
    model = ResNet(50, **SMALL, plugins=dropblock_plugins(drop_prob=0.3))
    plain = ResNet(50, **SMALL)
    plain.load_state_dict(model.state_dict())
    modules = [m for m in model.modules() if isinstance(m, MMDetDropBlock)]
    assert len(modules) == (6 + 3) * 3 and all(m.warmup_iters == 2000 for m in modules)
    hook = DropBlockScheduleHook()
    hook.before_train(_runner(model))
    # Iteration 0: no drop at all (mmdet's own counter would already drop
    # at 1 / warmup_iters), and mmdet's counter is off.
    assert all(m.drop_prob == 0 and m.warmup_iters == 0 for m in modules)
    x = torch.randn(2, 3, 64, 64)
    for a, b in zip(model.train()(x), plain.train()(x)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # Linear over the whole training (the paper's schedule), then flat.
    for it, expected in ((25, 0.075), (50, 0.15), (100, 0.3), (150, 0.3)):
        hook.before_train_iter(_runner(model, it), batch_idx=it)
        assert all(math.isclose(m.drop_prob, expected) for m in modules), it
    # A resumed run continues the schedule from runner.iter.
    resumed = DropBlockScheduleHook()
    for m in modules:
        m.drop_prob = 0.3
    resumed.before_train(_runner(model, it=50))
    assert all(math.isclose(m.drop_prob, 0.15) for m in modules)


def test_schedule_hook_lengths_and_errors():
    model = torch.nn.Sequential(DropBlock(4, 0.2, 3), MMDetDropBlock(0.4, 3))
    hook = DropBlockScheduleHook(warmup_iters=0.1)
    hook.before_train(_runner(model, max_iters=200))
    assert hook.warmup_iters == 20
    hook.before_train_iter(_runner(model, 10), 10)
    assert [m.drop_prob for m in model] == pytest.approx([0.1, 0.2])
    assert DropBlockScheduleHook(warmup_iters=8).drop_prob_at(0.4, 2) == pytest.approx(0.1)
    with pytest.raises(ValueError, match='warmup_iters=0'):
        DropBlockScheduleHook(warmup_iters=0)


def test_mmdets_own_counter_drops_at_its_first_forward():
    """Why the hook: mmdet's per-forward warm-up is already at 1 /
    warmup_iters on the first training forward."""
    torch.manual_seed(0)
    module = MMDetDropBlock(0.5, 3, warmup_iters=4)
    x = torch.ones(2, 8, 32, 32)
    assert (module.train()(x) == 0).any()


# --------------------------------------------------------------------------
# Label smoothing
# --------------------------------------------------------------------------


def _smoothed_ce_reference(logits, labels, eps, ignore_index=255):
    k = logits.size(1)
    logp = logits.log_softmax(1)
    valid = labels != ignore_index
    onehot = F.one_hot(labels.clamp(max=k - 1) * valid, k).movedim(-1, 1).float()
    target = (1 - eps) * onehot + eps / k
    per_element = -(target * logp).sum(1) * valid
    return per_element.mean()  # mmseg / mmdet: mean over all elements


def test_label_smoothing_cross_entropy_matches_the_formula():
    torch.manual_seed(0)
    logits = torch.randn(6, 5)
    labels = torch.tensor([0, 4, 2, 2, 1, 3])
    loss = LabelSmoothingCrossEntropyLoss(label_smoothing=0.2)
    torch.testing.assert_close(loss(logits, labels),
                               _smoothed_ce_reference(logits, labels, 0.2))
    # Segmentation maps with ignored pixels, as an mmseg decode head calls it.
    seg_logits = torch.randn(2, 5, 7, 9)
    seg_labels = torch.randint(0, 5, (2, 7, 9))
    seg_labels[0, :3] = 255
    torch.testing.assert_close(loss(seg_logits, seg_labels, ignore_index=255),
                               _smoothed_ce_reference(seg_logits, seg_labels, 0.2))
    assert loss.loss_name == 'loss_ce'


def test_label_smoothing_zero_is_the_plain_loss():
    from mmdet.models.losses import CrossEntropyLoss as DetCE
    from mmdet.models.losses import FocalLoss
    from mmseg.models.losses import CrossEntropyLoss as SegCE
    torch.manual_seed(0)
    seg_logits = torch.randn(2, 5, 7, 9)
    seg_labels = torch.randint(0, 5, (2, 7, 9))
    seg_labels[1, 2:] = 255
    ours = LabelSmoothingCrossEntropyLoss(label_smoothing=0.0, loss_weight=0.4)
    # mmseg divides the sum by (count + float eps), mmdet takes the mean.
    torch.testing.assert_close(
        ours(seg_logits, seg_labels, ignore_index=255),
        SegCE(loss_weight=0.4)(seg_logits, seg_labels, ignore_index=255), rtol=1e-6, atol=0)
    logits, labels = torch.randn(8, 6), torch.randint(0, 6, (8, ))
    weights = torch.rand(8)
    assert torch.equal(ours(logits, labels, weights, avg_factor=5.0),
                       DetCE(loss_weight=0.4)(logits, labels, weights, avg_factor=5.0))
    pred, target = torch.randn(10, 4), torch.tensor([0, 4, 4, 1, 3, 4, 2, 4, 0, 4])
    assert torch.equal(LabelSmoothingFocalLoss(label_smoothing=0.0)(pred, target, avg_factor=4),
                       FocalLoss()(pred, target, avg_factor=4))


def test_label_smoothing_focal_loss_matches_the_formula():
    torch.manual_seed(0)
    pred = torch.randn(10, 4, requires_grad=True)
    labels = torch.tensor([0, 4, 4, 1, 3, 4, 2, 4, 0, 4])  # 4 = background
    eps, gamma, alpha = 0.1, 2.0, 0.25
    t = F.one_hot(labels, 5)[:, :4].float() * (1 - eps) + eps / 4
    p = pred.sigmoid()
    bce = -(t * p.log() + (1 - t) * (1 - p).log())
    weight = (alpha * t + (1 - alpha) * (1 - t)) * ((1 - p) * t + p * (1 - t)).pow(gamma)
    expected = (bce * weight).sum() / 3  # avg_factor: the positives
    loss = LabelSmoothingFocalLoss(label_smoothing=eps, gamma=gamma, alpha=alpha)
    got = loss(pred, labels, avg_factor=3)
    torch.testing.assert_close(got, expected)
    got.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    # The background anchors' targets are eps / K on every class.
    assert torch.allclose(loss.smooth_targets(pred, labels)[1], torch.full((4, ), eps / 4))


def test_label_smoothing_errors():
    for cls in (LabelSmoothingCrossEntropyLoss, LabelSmoothingFocalLoss):
        with pytest.raises(ValueError, match=r'label_smoothing=1.0; expected a value in \[0, 1\)'):
            cls(label_smoothing=1.0)
    with pytest.raises(ValueError, match='LabelSmoothingFocalLoss'):
        LabelSmoothingCrossEntropyLoss(use_sigmoid=True)
    with pytest.raises(ValueError, match='use_sigmoid=True and activated=False'):
        LabelSmoothingFocalLoss(use_sigmoid=False)


# --------------------------------------------------------------------------
# All of them at once: batch 1, bf16, odd sizes
# --------------------------------------------------------------------------


def _regularized_r50(**kwargs):
    return ResNet(50, **SMALL, drop_path_rate=0.2,
                  plugins=dropblock_plugins(drop_prob=0.1, block_size=7), **kwargs)


def test_batch_one_bf16_and_odd_sizes_with_the_regularizers_on():
    torch.manual_seed(0)
    model = _regularized_r50().train()
    # Batch 1 in training, at the odd size (stride-32 map 4x5 < block 7).
    x = torch.randn(1, 3, *ODD_SIZE)
    out = model(x)
    h, w = ODD_SIZE
    assert [tuple(o.shape) for o in out] == [
        (1, 8 * 4 * 2**i, -(-h // s), -(-w // s)) for i, s in enumerate((4, 8, 16, 32))]
    sum(o.square().mean() for o in out).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, *ODD_SIZE))
        logits = torch.randn(2, 5, 9, 11, dtype=torch.bfloat16)
        labels = torch.randint(0, 5, (2, 9, 11))
        ce = LabelSmoothingCrossEntropyLoss()(logits, labels, ignore_index=255)
        focal = LabelSmoothingFocalLoss()(torch.randn(6, 4, dtype=torch.bfloat16),
                                          torch.tensor([0, 1, 4, 4, 2, 3]), avg_factor=4)
    assert all(torch.isfinite(o).all() for o in out)
    assert torch.isfinite(ce) and torch.isfinite(focal)
