"""The ``nn.Conv2d`` arguments every mmext convolution takes, checked and kept
under ``nn.Conv2d``'s attribute names (mmcv, FLOP counters and ``repr`` read them)."""


def set_conv_args(module, in_channels, out_channels, kernel_size, stride, padding, dilation,
                  groups):
    if in_channels % groups or out_channels % groups:
        raise ValueError(f'in_channels ({in_channels}) and out_channels ({out_channels}) '
                         f'must be divisible by groups ({groups})')
    module.in_channels = in_channels
    module.out_channels = out_channels
    module.kernel_size = kernel_size
    module.stride = stride
    module.padding = padding
    module.dilation = dilation
    module.groups = groups
