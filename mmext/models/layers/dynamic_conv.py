"""Dynamic convolution, DY-CNN (Chen et al., CVPR 2020)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mmext.registry import MODELS
from .conv_args import set_conv_args
from .kernel_bank import expand_static_tensors
from .protocols import ComponentExample


@MODELS.register_module()
class DynamicConv(BaseModule):
    """Dynamic convolution: attention over ``num_kernels`` convolution kernels.

    Per sample, an SE-style branch (GAP → ``attention.fc1`` reducing the
    channels by ``reduction`` → ReLU → ``attention.fc2`` → softmax(z / τ))
    weighs the ``num_kernels`` kernels and biases, which are summed into one
    kernel and bias for that sample; all samples then run in one grouped
    convolution.

    The temperature τ starts high so that all kernels receive gradient early
    on; :class:`~mmext.engine.DynamicConvTemperatureHook` anneals it to 1
    (the paper: linearly from 30 to 1 over the first 10 epochs). It is kept in
    a buffer so a trained checkpoint restores the annealed value at test time.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int | tuple[int]): Kernel size.
        stride (int | tuple[int]): Stride. Defaults to 1.
        padding (int | tuple[int]): Zero padding. Defaults to 0.
        dilation (int | tuple[int]): Dilation. Defaults to 1.
        groups (int): Groups. Defaults to 1.
        bias (bool): Learn one bias per kernel, aggregated like the kernels.
            Defaults to True.
        num_kernels (int): Number of kernels K. Defaults to 4.
        reduction (int): Channel reduction of the first attention FC; the
            hidden width is ``max(in_channels // reduction, num_kernels)`` so
            a 3-channel stem still gets a usable attention. Defaults to 4.
        temperature (float): Initial softmax temperature. Defaults to 30.0.
        init_cfg (dict, optional): Initialization config. Defaults to None.

    The attention has no norm (the paper's SE-style branch), so it trains at
    any batch size, one image per device included.
    """

    # No norm inside: nothing for a host to pass (unit_norm.with_host_norm).
    host_norm_args = ()
    # DynamicConvTemperatureHook anneals ``temperature`` (mmext.models.layers.protocols).
    annealed_temperature = True
    # The kernel mixing and the grouped convolution are traced and counted;
    # no extra_flops. The examples: K kernels with and without bias, one
    # kernel (no attention), a 1x1 kernel, groups and depth-wise.
    component_examples = (
        ComponentExample('conv', dict(num_kernels=4)),
        ComponentExample('conv', dict(num_kernels=4), kernel_size=1),
        ComponentExample('conv', dict(num_kernels=1)),
        ComponentExample('conv', dict(num_kernels=4, groups=4, bias=False)),
        ComponentExample('conv', dict(num_kernels=4, groups=16), out_channels=16),
    )

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, num_kernels=4, reduction=4, temperature=30.0,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        kernel_size = nn.modules.utils._pair(kernel_size)
        set_conv_args(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
                      groups)
        self.num_kernels = num_kernels

        hidden = max(in_channels // reduction, num_kernels)
        # Two FCs with a ReLU in between, as in SE (the paper's Fig. 3); no BN.
        # A single kernel leaves nothing to attend over (softmax of one logit
        # is 1), so the branch is dropped rather than kept without gradient.
        self.attention = None if num_kernels == 1 else nn.ModuleDict(
            dict(fc1=nn.Conv2d(in_channels, hidden, 1), fc2=nn.Conv2d(hidden, num_kernels, 1)))
        self.register_buffer('_temperature', torch.tensor(float(temperature)))

        self.weight = nn.Parameter(
            torch.empty(num_kernels, out_channels, in_channels // groups, *kernel_size))
        self.bias = nn.Parameter(torch.empty(num_kernels, out_channels)) if bias else None
        self._init_weights()

    def _init_weights(self):
        # Each kernel as nn.Conv2d would initialise it on its own.
        fan_in = self.weight[0, 0].numel()
        bound = 1 / math.sqrt(fan_in)
        for k in range(self.num_kernels):
            nn.init.kaiming_uniform_(self.weight[k], a=math.sqrt(5))
            if self.bias is not None:
                nn.init.uniform_(self.bias[k], -bound, bound)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        expand_static_tensors(state_dict, prefix, weight=self.weight, bias=self.bias)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def temperature(self):
        """Softmax temperature τ of the kernel attention."""
        return float(self._temperature)

    @temperature.setter
    def temperature(self, value):
        self._temperature.fill_(float(value))

    def update_temperature(self, temperature):
        """Same as setting :attr:`temperature`."""
        self.temperature = temperature

    def kernel_attention(self, x):
        """Softmax attention over the kernels, shape (N, num_kernels)."""
        if self.attention is None:
            return x.new_ones(x.size(0), 1)
        z = F.adaptive_avg_pool2d(x, 1)
        z = self.attention.fc2(F.relu(self.attention.fc1(z)))
        return torch.softmax(z.flatten(1) / self._temperature, dim=1)

    def aggregate(self, attention):
        """Per-sample kernels (N, out, in/groups, kh, kw) and biases (N, out)
        (None without bias) from the (N, num_kernels) attention."""
        weight = torch.mm(attention, self.weight.flatten(1)).view(-1, *self.weight.shape[1:])
        bias = None if self.bias is None else torch.mm(attention, self.bias)
        return weight, bias

    def forward(self, x):
        n, _, h, w = x.shape
        weight, bias = self.aggregate(self.kernel_attention(x))
        out = F.conv2d(x.reshape(1, -1, h, w), weight.reshape(-1, *weight.shape[2:]),
                       None if bias is None else bias.reshape(-1), self.stride, self.padding,
                       self.dilation, self.groups * n)
        return out.view(n, self.out_channels, *out.shape[-2:])

    def extra_repr(self):
        return (f'{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, '
                f'stride={self.stride}, padding={self.padding}, dilation={self.dilation}, '
                f'groups={self.groups}, num_kernels={self.num_kernels}, '
                f'bias={self.bias is not None}, temperature={self.temperature:g}')
