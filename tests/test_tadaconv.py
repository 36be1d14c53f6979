"""TAdaConv: plain conv at init, per-frame calibrated
kernels against a per-frame reference, temporal context, T=1."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmext.models.layers import TAdaConv
from mmext.registry import MODELS


def _perturbed(conv, std=0.2):
    # route.b is zero-initialised so that alpha starts at exactly 1; with it
    # at zero nothing upstream in the route (g, a, bn) receives a gradient,
    # and every test of the adaptive behaviour would see a static kernel.
    nn.init.normal_(conv.route.b.weight, std=std)
    return conv


def _make(stride=1, groups=1, bias=False, in_channels=8, out_channels=12, randomize=True):
    torch.manual_seed(0)
    conv = TAdaConv(in_channels, out_channels, 3, stride, 1, groups=groups, bias=bias)
    if randomize:
        _perturbed(conv)
        bn = conv.route.bn
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(0, 0.5)
    return conv.eval()


def _reference_alpha(conv, x):
    """The route function written out: (N, C, T, H, W) -> (N, C, T)."""
    r = conv.route
    frames = x.mean((3, 4))
    clip = frames.mean(2, keepdim=True)
    z = F.conv1d(frames + F.conv1d(clip, r.g.weight, r.g.bias), r.a.weight, r.a.bias,
                 padding=r.a.weight.shape[-1] // 2)
    z = (z - r.bn.running_mean[:, None]) / torch.sqrt(r.bn.running_var[:, None] + r.bn.eps)
    z = F.relu(z * r.bn.weight[:, None] + r.bn.bias[:, None])
    return F.conv1d(z, r.b.weight, padding=r.b.weight.shape[-1] // 2) + 1


def _calibrate(weight, alpha_nt, groups):
    """Scale input channel j of every filter of group g by alpha[g*cin_g + j]."""
    c_out, cin_g = weight.shape[:2]
    kernel = torch.empty_like(weight)
    for o in range(c_out):
        g = o // (c_out // groups)
        kernel[o] = weight[o] * alpha_nt[g * cin_g:(g + 1) * cin_g].view(-1, 1, 1)
    return kernel


@pytest.mark.parametrize('stride,groups', [(1, 1), (2, 2)])
def test_init_equals_plain_conv(stride, groups):
    conv = TAdaConv(8, 12, 3, stride, 1, groups=groups, bias=True).train()
    video = torch.randn(2, 8, 5, 9, 11)
    out = conv(video)
    for t in range(5):
        ref = F.conv2d(video[:, :, t], conv.weight, conv.bias, stride, 1, 1, groups)
        assert torch.allclose(out[:, :, t], ref, atol=1e-5), t
    image = torch.randn(2, 8, 9, 11)
    ref = F.conv2d(image, conv.weight, conv.bias, stride, 1, 1, groups)
    assert torch.allclose(conv(image), ref, atol=1e-5)


def test_init_survives_host_init():
    backbone = MODELS.build(
        dict(type='mmext.ResNet', depth=18, dcn=dict(type='mmext.TAdaConv'),
             stage_with_dcn=(True, True, True, True),
             init_cfg=dict(type='Kaiming', layer=['Conv1d', 'Conv2d'])))
    backbone.init_weights()
    convs = [m for m in backbone.modules() if isinstance(m, TAdaConv)]
    assert len(convs) == 16
    assert all(m.route.b.weight.abs().max() == 0 for m in convs)
    # Kaiming (fan_out) did run: well above nn.Conv1d's default std 1/sqrt(3 fan_in)
    assert all(m.route.a.weight.std() > 2 / (3 * m.route.a.weight[0].numel()) ** 0.5
               for m in convs)
    outs = backbone(torch.randn(2, 3, 64, 64))
    assert outs[-1].shape == (2, 512, 2, 2)


@pytest.mark.parametrize('stride,groups', [(1, 1), (2, 2), (2, 4)])
def test_per_frame_kernels(stride, groups):
    """Odd T and odd H, W: frame t of the batched output equals F.conv2d of
    frame t with the base kernel calibrated by alpha_t computed here."""
    conv = _make(stride, groups, bias=True)
    video = torch.randn(2, 8, 5, 9, 11)
    with torch.no_grad():
        out = conv(video)
        alpha = _reference_alpha(conv, video)
        assert torch.allclose(conv.route(video), alpha, atol=1e-5)
        for n in range(2):
            for t in range(5):
                kernel = _calibrate(conv.weight, alpha[n, :, t], groups)
                ref = F.conv2d(video[n:n + 1, :, t], kernel, conv.bias, stride, 1, 1, groups)
                assert torch.allclose(out[n:n + 1, :, t], ref, atol=1e-5), (n, t)
        # the frames of one clip are convolved with different kernels
        kernels = conv.calibrated_weight(alpha)
        assert kernels.shape == (2, 5, 12, 8 // groups, 3, 3)
        for t in range(1, 5):
            assert not torch.allclose(kernels[0, 0], kernels[0, t])


def test_temporal_context():
    """alpha_t depends on frames t-1..t+1 (route kernels 3) and, through the
    clip average, on every frame."""
    conv = _make()
    video = torch.randn(1, 8, 5, 7, 7)
    changed = video.clone()
    changed[:, :, 0] += 1
    with torch.no_grad():
        base, new = conv.route(video), conv.route(changed)
    assert (new - base).abs()[0, :, 1].max() > 1e-3  # neighbour
    assert (new - base).abs()[0, :, 4].max() > 1e-3  # far frame, global context only
    # without the global context the far frame is unaffected
    with torch.no_grad():
        conv.route.g.weight.zero_()
        base, new = conv.route(video), conv.route(changed)
    assert torch.allclose(new[0, :, 3:], base[0, :, 3:], atol=1e-6)


@pytest.mark.parametrize('stride', [1, 2])
def test_single_frame_equals_image_form(stride):
    conv = _make(stride, groups=2)
    image = torch.randn(3, 8, 9, 11)
    with torch.no_grad():
        out = conv(image)
        assert torch.allclose(conv(image.unsqueeze(2)).squeeze(2), out, atol=1e-6)
        # per-sample calibration: sample n uses its own kernel
        alpha = _reference_alpha(conv, image.unsqueeze(2))
        for n in range(3):
            kernel = _calibrate(conv.weight, alpha[n, :, 0], 2)
            ref = F.conv2d(image[n:n + 1], kernel, None, stride, 1, 1, 2)
            assert torch.allclose(out[n:n + 1], ref, atol=1e-5), n


def test_video_shapes_and_grads():
    conv = _perturbed(TAdaConv(8, 16, 3, 2, 1, dilation=1)).train()
    video = torch.randn(2, 8, 5, 9, 11, requires_grad=True)
    out = conv(video)
    assert out.shape == (2, 16, 5, 5, 6)
    out.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in conv.parameters())
