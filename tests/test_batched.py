"""Per-sample kernels are computed for the whole batch at once: the number of
tensor operations a forward runs does not grow with the batch size, which a
Python loop over the samples (or frames) would make it do."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mmext.registry import MODELS

# Scoped names: an earlier test may leave mmdet as the default scope, where
# 'DynamicConv' is mmdet's Sparse R-CNN layer.


class OpCounter(TorchDispatchMode):
    """Counts every ATen operator call below the Python layer."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def op_count(module, x):
    with torch.no_grad(), OpCounter() as counter:
        module(x)
    return counter.count


CONVS = [
    dict(type='mmext.DynamicConv'),
    dict(type='mmext.ODConv', kernel_num=4),
    dict(type='mmext.ODConv', kernel_num=1),
    dict(type='mmext.SKConv'),
    dict(type='mmext.DCDC'),
    dict(type='mmext.TAdaConv'),
]


@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('cfg', CONVS,
                         ids=lambda c: '-'.join(str(v).replace('mmext.', '') for v in c.values()))
def test_op_count_does_not_grow_with_the_batch(cfg, stride):
    conv = MODELS.build(dict(cfg, in_channels=32, out_channels=32, kernel_size=3, stride=stride,
                             padding=1))
    conv.eval()
    counts = [op_count(conv, torch.randn(n, 32, 13, 11)) for n in (2, 7)]
    assert counts[0] == counts[1], counts


def test_tadaconv_op_count_does_not_grow_with_clips_or_frames():
    conv = MODELS.build(dict(type='mmext.TAdaConv', in_channels=16, out_channels=16, kernel_size=3,
                             padding=1))
    conv.eval()
    counts = [op_count(conv, torch.randn(n, 16, t, 9, 7)) for n, t in ((2, 3), (5, 8))]
    assert counts[0] == counts[1], counts


def test_the_counter_sees_a_loop_over_the_batch():
    """The check itself: a per-sample loop is caught."""
    conv = torch.nn.Conv2d(8, 8, 3, padding=1)

    class Looped(torch.nn.Module):

        def forward(self, x):
            return torch.cat([conv(s[None]) for s in x])

    counts = [op_count(Looped(), torch.randn(n, 8, 5, 5)) for n in (2, 7)]
    assert counts[0] < counts[1]
