"""Contract checks shared by the tests of every plugin and convolution."""
import torch

ODD_SIZE = (97, 131)


def randomize(module, seed=0):
    """Weights far from their init (N(0, 0.3)), so that hand references are
    compared away from the init's special values and no gate or map is
    trivially constant."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return module


def assert_all_grads(module, out):
    """Every parameter receives a finite, non-zero-somewhere gradient."""
    module.zero_grad()
    (out.float() ** 2).mean().backward()
    missing = [n for n, p in module.named_parameters()
               if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
    assert not missing, f'no / non-finite gradient for {missing}'
    dead = [n for n, p in module.named_parameters() if p.requires_grad and p.grad.abs().sum() == 0]
    assert not dead, f'all-zero gradient for {dead}'


def check_conv_contract(make_conv, in_channels=16, out_channels=24, kernel_size=3, batch=2,
                        size=ODD_SIZE, strides=(1, 2)):
    """A drop-in for ``nn.Conv2d(in, out, k, stride, padding=k//2)``: output
    shape at odd sizes and both strides, gradients everywhere, bf16 autocast
    without NaN. ``make_conv(in, out, k, stride, padding)`` builds the module."""
    for stride in strides:
        conv = make_conv(in_channels, out_channels, kernel_size, stride, kernel_size // 2)
        ref = torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2)
        x = torch.randn(batch, in_channels, *size)
        out = conv(x)
        assert out.shape == ref(x).shape, (stride, out.shape)
        assert_all_grads(conv, out)
        conv.eval()
        with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
            out16 = conv(x)
        assert not torch.isnan(out16).any()
        conv.train()
