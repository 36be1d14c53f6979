"""MGBlock (multigrid-in-channels): the official parameter counts, the serial
V-cycle against the official computation, full channel coupling through
grouped convs, and the block on the ResNet hosts."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmext.models.layers import MGBlock
from mmext.registry import MODELS
from backbone_checks import count_params
from design_checks import randomize, randomize_norms


def test_512_channel_block_params_and_levels():
    # Measured on the official MgBlockDwGroup (catalog C3): stride 1, no
    # connector, norm affines counted.
    block = MGBlock(512, 512)
    assert block.connector is None
    assert block.level_widths == (512, 256, 128, 64, 32, 16)
    assert count_params(block) == 613_760
    assert [c.groups for c in block.restrict] == [16, 8, 4, 2, 1]
    assert [s.conv1.conv.groups for s in block.smooth] == [16, 8, 4, 2, 1]
    assert block.coarse.conv1.conv.groups == block.coarse.conv2.conv.groups == 1
    assert count_params(MGBlock(512, 512, group_size=16)) == 312_192


def test_official_cifar_network_params():
    """The official driver's defaults: channels 32-64-128-256, blocks
    1-2-2-2, strides 1-2-2-2, 7x7 stride-2 stem + max pool, CIFAR-10 head:
    1,047,018 parameters measured on the official code."""
    layers = [nn.Conv2d(3, 32, 7, 2, 3, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
              nn.MaxPool2d(3, 2, 1)]
    in_channels = 32
    for channels, blocks, stride in zip((32, 64, 128, 256), (1, 2, 2, 2), (1, 2, 2, 2)):
        for i in range(blocks):
            layers.append(MGBlock(in_channels, channels, stride=stride if i == 0 else 1))
            in_channels = channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 10)]
    assert count_params(nn.Sequential(*layers)) == 1_047_018


def _official_serial_forward(block, x):
    """``MgBlockDwGroup.forward`` in serial mode (``resnetMG.py``), written
    with torch.nn.functional on the block's tensors, eval-mode norms."""

    def conv(c, t):
        return F.conv2d(t, c.weight, None, c.stride, c.padding, c.dilation, c.groups)

    def bn(m, t):
        return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.,
                            m.eps)

    def resnet_step(step, t):
        h = F.relu(bn(step.conv1.norm, conv(step.conv1.conv, t)))
        return F.relu(bn(step.conv2.norm, conv(step.conv2.conv, h)) + t)

    if block.connector is not None:
        x = F.relu(bn(block.connector.norm, conv(block.connector.conv, x)))
    z_arr, out_forward = [], []
    for r in block.restrict:
        z_arr.append(x)
        x = conv(r, x)
        out_forward.append(x)
    xc = resnet_step(block.coarse, x)
    for level in reversed(range(len(z_arr))):
        p = block.prolong[level]
        z0 = z_arr[level] + bn(p.norm, conv(p.conv, xc - out_forward[level]))
        xc = resnet_step(block.smooth[level], z0)
    return xc


@pytest.mark.parametrize('stride,dilation', [(2, 1), (1, 2)])
def test_forward_equals_official_serial_cycle(stride, dilation):
    block = randomize_norms(randomize(MGBlock(16, 32, stride=stride, dilation=dilation,
                                              group_size=8, mg_fc_channels=8)))
    assert block.level_widths == (32, 16, 8, 4)
    block.eval()
    x = torch.randn(2, 16, 11, 13)
    with torch.no_grad():
        out = block(x)
        assert out.shape == (2, 32, -(-11 // stride), -(-13 // stride))
        torch.testing.assert_close(out, _official_serial_forward(block, x))


def _channel_dependence(module, channels, batch=4, size=7):
    """(C_out, C_in) sums of |d out_j / d x_i| over all positions of a batch
    of random inputs (several: an output ReLU that is off everywhere for one
    input rarely is for all)."""
    torch.manual_seed(1)
    x = torch.randn(batch, channels, size, size)
    jac = torch.autograd.functional.jacobian(lambda t: module(t).sum((2, 3)), x,
                                             vectorize=True)
    # (N, C_out, N, C_in, H, W); samples are independent in eval mode
    return jac.abs().sum((0, 2, 4, 5))


def test_every_output_channel_depends_on_every_input_channel():
    # 64 channels, g = 8: levels 64, 32, 16 with 8, 4, 2 groups, coarsest 8;
    # every conv but the coarsest two is grouped.
    block = randomize_norms(randomize(MGBlock(64, 64, group_size=8, mg_fc_channels=16)))
    block.eval()
    grouped = [m for name, m in block.named_modules()
               if isinstance(m, nn.Conv2d) and not name.startswith('coarse.')]
    assert all(m.groups >= 2 for m in grouped) and len(grouped) == 12
    # The finest smoothing step alone couples only within its 8 groups ...
    smooth = _channel_dependence(block.smooth[0], 64)
    same_group = torch.block_diag(*[torch.ones(8, 8)] * 8).bool()
    assert (smooth[~same_group] == 0).all() and (smooth[same_group] > 0).all()
    # ... the V-cycle through the coarsest level couples every pair.
    # A channel whose final ReLU is off for every input (a property of the
    # random weights, not of the coupling) has a zero row; every other row
    # must be non-zero everywhere.
    full = _channel_dependence(block, 64)
    alive = full.sum(1) > 0
    assert alive.sum() >= 60 and (full[alive] > 0).all(), (full == 0).nonzero()[:5]


def test_connector_and_transfer_init():
    # The official connector has groups=in_planes; a width that is not a
    # multiple takes gcd(in, out) groups.
    assert MGBlock(64, 128, stride=2).connector.conv.groups == 64
    block = MGBlock(24, 16, group_size=8, mg_fc_channels=8)
    assert block.connector.conv.groups == 8
    assert block(torch.randn(1, 24, 7, 9)).shape == (1, 16, 7, 9)
    # R and P start as 1/g and keep it under a host's Kaiming init_cfg.
    block = MGBlock(64, 64, group_size=8, init_cfg=dict(type='Kaiming', layer='Conv2d'))
    block.init_weights()
    transfer = [r.weight for r in block.restrict] + [p.conv.weight for p in block.prolong]
    assert all(torch.equal(w, torch.full_like(w, 1 / 8)) for w in transfer)
    assert block.smooth[0].conv1.conv.weight.std() > 0


def test_widths_the_grouped_transfer_cannot_halve():
    with pytest.raises(ValueError, match='100-channel level.*3 groups'):
        MGBlock(100, 100)
    with pytest.raises(ValueError, match='group_size'):
        MGBlock(16, 16, group_size=0)


def test_with_cp_same_output_and_gradients():
    torch.manual_seed(0)
    plain = MGBlock(8, 16, stride=2, group_size=4, mg_fc_channels=4)
    ckpt = MGBlock(8, 16, stride=2, group_size=4, mg_fc_channels=4, with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 8, 9, 11, requires_grad=True)
    grads = []
    for block in (plain, ckpt):
        out = block(x)
        out.square().mean().backward()
        grads.append((out.detach(), block.smooth[0].conv1.conv.weight.grad.clone()))
    torch.testing.assert_close(grads[0], grads[1])


HOSTS = [('mmext.ResNet', 18, {}), ('mmext.ResNet', 50, {}),
         ('mmext.ResNetV1c', 18, dict(stem_channels=8)),
         ('mmext.ResNetV1c', 50, dict(stem_channels=8)),
         # mmdet's ResNeXt has no depth 18.
         ('mmext.ResNeXt', 50, dict(groups=2, base_width=4))]


@pytest.mark.parametrize('host,depth,extra', HOSTS)
def test_block_of_the_resnet_hosts(host, depth, extra):
    """Every block of every stage replaced; bottleneck hosts run the MG block
    at planes * 4. One image, training-mode norms, odd size."""
    base = 8 if depth == 18 else 4
    backbone = MODELS.build(dict(
        type=host, depth=depth, base_channels=base, norm_cfg=dict(type='GN', num_groups=2),
        block_cfg=dict(type='mmext.MGBlock', group_size=8, mg_fc_channels=8), **extra))
    blocks = [m for m in backbone.modules() if isinstance(m, MGBlock)]
    assert len(blocks) == (8 if depth == 18 else 16)
    # The host's norm_cfg reaches the block (host_norm_args).
    assert not any(isinstance(m, nn.BatchNorm2d) for b in blocks for m in b.modules())
    expansion = 1 if depth == 18 else 4
    assert backbone.out_channels == tuple(base * expansion * 2**i for i in range(4))
    backbone.train()
    with torch.no_grad():
        outs = backbone(torch.randn(1, 3, 97, 131))
    assert [tuple(o.shape[1:]) for o in outs] == [
        (c, -(-97 // s), -(-131 // s))
        for c, s in zip(backbone.out_channels, backbone.out_strides)]


def test_large_odd_input_bf16_one_image():
    backbone = MODELS.build(dict(
        type='mmext.ResNet', depth=18, base_channels=4, stem_channels=4,
        block_cfg=dict(type='mmext.MGBlock', group_size=4, mg_fc_channels=4)))
    backbone.eval()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        outs = backbone(torch.randn(1, 3, 511, 673))
    assert [tuple(o.shape[2:]) for o in outs] == [(128, 169), (64, 85), (32, 43), (16, 22)]
    assert all(torch.isfinite(o).all() for o in outs)
