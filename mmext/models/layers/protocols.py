"""What a component declares in its own file so that the tools and the shared
tests find it without a central list of classes.

Every protocol is read off the module's class by attribute (duck typing): the
tools never name a design, and adding a design edits no file but its own.
The declarations below are plain data; a class may use any object with the
same attributes.

* ``attention_maps`` (an :class:`AttentionMaps`), read by
  ``mmext.analysis.attention_maps`` (``visualize_attention.py``): which
  submodule's output is each map, its kind and label.
* ``extra_flops(self, inputs, output) -> int`` (a method), read by
  ``mmext.analysis.flops.count_flops`` (``get_flops.py`` and every cost
  table): the FLOPs of one call that the trace does not see (a per-sample
  kernel modulated elementwise); added to the module's count and its
  ancestors', under ``dynamic_kernel``.
* ``annealed_temperature = True`` (a class attribute) with a settable
  ``temperature``, read by ``DynamicConvTemperatureHook``: the hook sets the
  temperature of the module before every step.
* ``component_examples`` (a tuple of :class:`ComponentExample`), read by
  ``tests/test_component_contract.py``: how the shared checks build small
  instances.
* ``host_norm_args`` (a tuple of constructor argument names, ``()`` for none),
  read by the mmext hosts and the shared one-image check; see
  :mod:`.unit_norm`.
* ``weight_bits`` and ``activation_bits`` (ints, 32 for full precision) on a
  module that owns a ``weight``, read by ``mmext.analysis.low_bit``: the
  bit-widths its multiply-adds run at, for BOPs, full-precision FLOPs and
  the effective model size.

Two more declarations live next to the code that reads them:
``official_layouts`` (a tuple of
:class:`~mmext.models.official_layouts.OfficialLayout`: an official checkpoint
released inside a ResNet, read by ``python -m mmext convert``) and, on
backbones, ``reference_implementations`` (read by the benchmark's
``--compare reference``); a design that only configures another library's
class declares both through an :class:`~mmext.models.upstream.UpstreamDesign`.
``docs/adding_a_design.md`` walks through all of them.

Every component registered in the mmext ``MODELS`` registry that is not a
backbone must declare ``component_examples`` and ``host_norm_args``; the
others are declared by the designs that have maps, hidden FLOPs, a
temperature or low bit-widths.
"""
import dataclasses

KINDS = ('channel', 'spatial')
COMPONENT_KINDS = ('conv', 'plugin', 'unit', 'block', 'stem')


@dataclasses.dataclass(frozen=True)
class AttentionMap:
    """One map a module exposes: the output of one of its submodules.

    Attributes:
        source (str): Dotted name of the submodule (``module.get_submodule``)
            whose forward output is the map, e.g. ``'spatial_activate'``.
        kind (str): ``'channel'`` (one weight per channel; the tool flattens
            the tensor to (N, C)) or ``'spatial'`` (N, 1 or C, H, W).
        label (str): Which of the module's maps, shown in the title.
            Defaults to ``kind``.
        transform (str, optional): Name of an attribute of the module (a
            method or a submodule) called on the source's output when it
            is not the map itself, for one cheap documented step (e.g. an
            activation, a softmax). It returns the map, or a list of
            ``(label, tensor)`` pairs when one output holds several maps.
            Defaults to None (the output is the map).
    """

    source: str
    kind: str
    label: str = ''
    transform: str = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f'AttentionMap kind must be one of {KINDS}, got {self.kind!r}')


@dataclasses.dataclass(frozen=True)
class AttentionMaps:
    """A class's ``attention_maps`` declaration.

    Attributes:
        design (str): The design's name in records and titles, e.g.
            ``'CBAM'``.
        summary (str): What is recorded, in a few words (listed when a model
            has no attention module).
        maps (tuple[AttentionMap]): In the order the module computes them.

    Example:
        >>> class Gate(nn.Module):
        ...     attention_maps = AttentionMaps('Gate', 'spatial gate', (
        ...         AttentionMap('activate', 'spatial', 'gate'), ))
    """

    design: str
    summary: str
    maps: tuple


@dataclasses.dataclass(frozen=True)
class ComponentExample:
    """A small instance for the shared component checks
    (``tests/test_component_contract.py``).

    The checks, by ``kind``:

    * ``'conv'``: a drop-in for ``nn.Conv2d(in, out, k, stride, k // 2)``,
      built as ``cls(in_channels, out_channels, kernel_size, stride=s,
      padding=kernel_size // 2, **kwargs)``; output shape at an odd size
      (97x131) at stride 1 and 2.
    * ``'plugin'``: a ResNet ``plugins=`` entry, built as
      ``cls(in_channels, **kwargs)`` and through mmcv's
      ``build_plugin_layer``; keeps (N, C, H, W) at the odd size.
    * ``'unit'``: a backbone's mixer that also works stand-alone, built as
      ``cls(in_channels, **kwargs)``; keeps (N, C, H, W) at the odd size.
    * ``'block'``: a residual block with its own shortcut, what a ResNet
      host's ``block_cfg`` builds in place of its BasicBlock / Bottleneck:
      ``cls(in_channels, out_channels, stride=s, dilation=1, **kwargs)``;
      output ``(N, out_channels, ceil(H / s), ceil(W / s))`` at stride 1
      and 2.
    * ``'stem'``: what a ResNet host's ``stem_cfg`` builds in place of its
      stem (conv, norm, ReLU, max pool): ``cls(in_channels, out_channels,
      **kwargs)``; output ``(N, out_channels, ceil(H / 4), ceil(W / 4))``.

    and for every kind: a finite, somewhere non-zero gradient to every
    parameter (after the weights are drawn from N(0, 0.3)), no NaN under
    bf16 autocast, and the one-image-per-device contract of
    ``tests/design_checks.check_one_image_per_device`` on a 9x9 map.

    Attributes:
        kind (str): ``'conv'``, ``'plugin'``, ``'unit'``, ``'block'`` or
            ``'stem'``.
        kwargs (dict): Constructor keywords of the small instance.
        in_channels (int): Input channels. Defaults to 16.
        out_channels (int): Output channels of a ``'conv'``, ``'block'`` or
            ``'stem'``. Defaults to 24.
        kernel_size (int): Kernel size of a ``'conv'``. Defaults to 3.
        one_image_raises (bool): Whether a training forward of the default
            build at batch 1 on a 9x9 map stops with mmext's one-value error
            (a BatchNorm over a globally pooled descriptor), rather than
            running. Defaults to False.
    """

    kind: str
    kwargs: dict = dataclasses.field(default_factory=dict)
    in_channels: int = 16
    out_channels: int = 24
    kernel_size: int = 3
    one_image_raises: bool = False

    def __post_init__(self):
        if self.kind not in COMPONENT_KINDS:
            raise ValueError(f'ComponentExample kind must be one of {COMPONENT_KINDS}, '
                             f'got {self.kind!r}')
