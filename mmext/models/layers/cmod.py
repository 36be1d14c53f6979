"""CMod: a ResNet stem whose Gabor-like channels are complex wavelet packets
followed by a modulus (Leterme, Polisano, Perrier, Alahari, "From CNNs to
Shift-Invariant Twin Models Based on Complex Wavelets", EUSIPCO 2024,
arXiv 2212.00394; theory in arXiv 2209.11740).

The paper replaces, for the Gabor-like output channels of a CNN's first layer,
"RMax" (convolution, ReLU, max pooling) by "CMod" (complex convolution,
subsampling, modulus): the modulus of a band-pass complex (near-analytic)
filter response varies slowly, so subsampling it aliases far less than max
pooling a real response, and the stem is nearly invariant to small shifts.
Official code: ``hubert-leterme/wcnn`` (``wcnn/cnn/models/resnet.py``,
``building_blocks.py``, ``base_modules.py``, ``wpt/dtcwt2d.py``,
``wpt/_base_dwt2d.py``); the model built here is its ResNet configuration
``Ft40YEx_mod`` (README: ``train.py RwyI_mod -a dtcwpt_resnet34 --config
Ft40YEx_mod``), written anew.
"""
import math
from functools import lru_cache

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from mmext.registry import MODELS
from mmext.utils.errors import MMExtError
from .protocols import ComponentExample

#: Kingsbury's Q-shift filter ``qshift_a`` (10 taps, orthonormal, tree "a"),
#: the low-pass filter the official code uses for tree a (the ``dtcwt``
#: package's ``h0b`` of ``qshift_a``; the package names the trees the other
#: way round, as the official code notes). Tree b is its time reverse, which
#: delays it by about half a sample (the Q-shift design rule).
QSHIFT_A = (-0.006181881892116438, -0.0016896812725281543, -0.1002312195074762,
            0.0008736226952170968, 0.5636557101270515, 0.7666284677930372,
            0.26383956105893763, -0.10983605166597087, -0.013975370246888838,
            0.051130405283831656)

#: The 16 complex packets (of the 32 of a depth-2 DT-CWPT) that feed the
#: mixing, in the official order (``_PERMUTE_FEATMAPS_EXCLUDE_EDGES`` of the
#: official ``resnet.py``). Index ``psi * 16 + (corner * 4 + local)``, see
#: :func:`packet_index`. The low-pass packets (0, 16) and those at the edge of
#: the frequency plane (the "Ex" configurations) are left out.
OFFICIAL_PACKETS = (1, 2, 19, 17, 18, 3, 5, 23, 10, 27, 31, 7, 21, 11, 26, 15)
#: Packets per mixing group, groups of each grouped mixing, output maps per
#: group: the official "Ex" configuration (one scale per group; every group
#: has as many convolution groups as inputs, so each output map is one packet
#: times a learned real weight).
OFFICIAL_MIX_IN = (6, 4, 1, 4, 1)
OFFICIAL_MIX_GROUPS = (6, 4, 1, 4, 1)
OFFICIAL_MIX_OUT = (12, 4, 2, 4, 2)
#: Initial weights of the learned 1x1 RGB -> luminance mix (official ResNet).
LUMINANCE_INIT = (0.9802, 1.3060, 0.7138)

#: Zero padding of the wavelet branch before its first sample and after its
#: last. The official code pads 14 on each side (for its filter lengths);
#: one more at the end gives ``ceil(H / 4)`` at odd sizes too and changes no
#: output at even sizes (identical sampling positions).
PAD_BEFORE, PAD_AFTER = 14, 15


def qshift_filters(dtype=torch.float64):
    """The four 1-D filters of the Q-shift stages, as the official code
    assigns them.

    Returns:
        tuple[Tensor]: ``(ha, hb, ga, gb)``, each of 10 taps:
        ``hb`` is ``ha`` reversed, ``ga`` the quadrature mirror of ``ha``
        (reverse, negate the even taps) and ``gb = -mirror(hb)``.
        Cross-correlation kernels (``F.conv2d`` convention).
    """
    ha = torch.tensor(QSHIFT_A, dtype=dtype)
    hb = ha.flip(0)

    def mirror(h):
        g = h.flip(0).clone()
        g[::2] = -g[::2]
        return g

    return ha, hb, mirror(ha), -mirror(hb)


def _cascade(first, second):
    """Equivalent 1-D cross-correlation kernel at stride 2 of a stride-2 stage
    ``first`` followed by an undecimated stage ``second`` (on the decimated
    signal): ``e[2m + j] += second[m] * first[j]``."""
    out = first.new_zeros(len(first) + 2 * (len(second) - 1))
    for m, v in enumerate(second):
        out[2 * m:2 * m + len(first)] += v * first
    return out


def dual_tree_packets(dtype=torch.float64):
    """The 1-D depth-2 dual-tree wavelet packets as stride-2 kernels.

    Stage 1 (stride 2) uses ``ha`` / ``ga`` for both trees with a one-sample
    offset between them (tree a: ``[0, 0, ha]``, ``[ga, 0, 0]``; tree b:
    ``[0, ha, 0]``, ``[0, -ga, 0]``); stage 2 (undecimated) uses the Q-shift
    pair with the packet-tree swap of Bayram & Selesnick (IEEE TSP 2008): in
    tree a the low branch continues with ``(ha, ga)`` and the high branch with
    ``(hb, gb)``; in tree b the other way round. As the official ``DtCwpt2d``
    (its ``CMF_MAP``).

    Returns:
        Tensor: ``(2, 4, 30)``: tree (a, b), packet ``i = 2 * stage1 + stage2``
        (0 = low-low ... 3 = high-high), taps.
    """
    ha, hb, ga, gb = qshift_filters(dtype)
    z2, z1 = ha.new_zeros(2), ha.new_zeros(1)
    tree_a = ((torch.cat([z2, ha]), (ha, ga)), (torch.cat([ga, z2]), (hb, gb)))
    tree_b = ((torch.cat([z1, ha, z1]), (hb, gb)), (torch.cat([z1, -ga, z1]), (ha, ga)))
    return torch.stack([
        torch.stack([_cascade(first, nxt) for first, pair in tree for nxt in pair])
        for tree in (tree_a, tree_b)])


def packet_index(psi, i, j):
    """Official index of the 2-D complex packet of wavelet ``psi`` (0: Psi_a,
    1: Psi_b) from vertical packet ``i`` and horizontal packet ``j``: the
    quad-tree order of the recursion (corner of the first stage, then the
    position in it)."""
    return psi * 16 + ((i // 2) * 2 + j // 2) * 4 + (i % 2) * 2 + j % 2


def complex_packet_matrix(packets=OFFICIAL_PACKETS, dtype=torch.float64):
    """The fixed linear map from the 64 real separable responses to the
    chosen complex packets.

    The real responses are ``d_pq[i, j]`` (vertical tree ``p``, packet ``i``;
    horizontal tree ``q``, packet ``j``; channel ``(4p + i) * 8 + 4q + j``).
    Complex packets (official ``_combine_dualtree_coefs``):
    ``Psi_a = (d_aa - d_bb) + i (d_ba + d_ab)``,
    ``Psi_b = (d_aa + d_bb) + i (d_ba - d_ab)``. A packet whose spectrum lies
    mostly at negative horizontal frequencies is conjugated, so that every
    packet is near-analytic on the same side (the official
    ``make_analytic``; the rule computed here from the spectra gives the
    official ``NEG_FOURIER_SUPPORT`` table of depth 2).

    Returns:
        Tensor: ``(2 * len(packets), 64)``: rows ``(packet, re / im)``.
    """
    full = torch.zeros(32, 2, 64, dtype=dtype)
    for i in range(4):
        for j in range(4):
            def ch(p, q):
                return (4 * p + i) * 8 + 4 * q + j
            a = packet_index(0, i, j)
            b = packet_index(1, i, j)
            full[a, 0, ch(0, 0)], full[a, 0, ch(1, 1)] = 1, -1
            full[a, 1, ch(1, 0)], full[a, 1, ch(0, 1)] = 1, 1
            full[b, 0, ch(0, 0)], full[b, 0, ch(1, 1)] = 1, 1
            full[b, 1, ch(1, 0)], full[b, 1, ch(0, 1)] = 1, -1
    kernels = complex_kernels(full)
    spectrum = torch.fft.fft2(kernels, s=(64, 64)).abs().square()
    negative = spectrum[..., 33:].sum((-2, -1)) > spectrum[..., 1:32].sum((-2, -1))
    full[negative, 1] *= -1
    return full[list(packets)].reshape(-1, 64)


def complex_kernels(matrix):
    """2-D complex kernels (``(K, 30, 30)``, cross-correlation, stride 2) of
    the complex packets a ``(K, 2, 64)`` (or ``(2K, 64)``) combination of the
    separable responses gives."""
    packets = dual_tree_packets(matrix.dtype).reshape(8, -1)
    separable = torch.einsum('pa,qb->pqab', packets, packets).reshape(64, 30, 30)
    re_im = torch.einsum('kc,cab->kab', matrix.reshape(-1, 64), separable).reshape(-1, 2, 30, 30)
    return torch.complex(re_im[:, 0], re_im[:, 1])


class BatchNormOnGaborModulus2d(_BatchNorm):
    """Batch normalisation of CMod moduli by their energy (official
    ``BatchNormOnGaborModulus2d``): ``y = x / sqrt(E / 2 + eps) * |gamma| +
    beta``, ``E`` the mean of ``x ** 2`` over batch and space per channel (in
    training; its running average in eval, stored as ``running_var``), no mean
    subtracted: the modulus of a zero-mean complex response has no meaningful
    mean to remove, and dividing by the energy keeps 0 at 0.

    Statistics cover the spatial positions too, so one image per device
    trains. With ``sync=True`` (the host's ``norm_cfg`` is SyncBN) the energy
    sums and counts of all ranks are added (``all_reduce``, with gradients)
    when a process group of several ranks is running.

    Args:
        num_features (int): Channels C.
        eps (float): Added to ``E / 2``. Defaults to 1e-5.
        momentum (float | None): Running-average factor; None for the
            cumulative average. Defaults to 0.1.
        sync (bool): Sum the energy across ranks. Defaults to False.

    Shape:
        ``(N, C, H, W)`` in and out; computed in float32.

    Raises:
        ValueError: An input that is not 4-D.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, sync=False):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=True,
                         track_running_stats=True)
        self.sync = sync

    def _check_input_dim(self, x):
        if x.dim() != 4:
            raise ValueError(f'{type(self).__name__} expects (N, C, H, W), got {tuple(x.shape)}')

    def _energy(self, x):
        total = x.square().sum((0, 2, 3))
        count = x.new_full((1, ), x.numel() // x.size(1))
        if self.sync and dist.is_available() and dist.is_initialized() \
                and dist.get_world_size() > 1:
            from torch.distributed.nn.functional import all_reduce
            summed = all_reduce(torch.cat([total, count]))
            total, count = summed[:-1], summed[-1:]
        return total / count

    def forward(self, x):
        self._check_input_dim(x)
        x = x.float()
        if self.training:
            energy = self._energy(x)
            with torch.no_grad():
                self.num_batches_tracked += 1
                factor = self.momentum if self.momentum is not None \
                    else 1.0 / float(self.num_batches_tracked)
                self.running_var.mul_(1 - factor).add_(energy.detach(), alpha=factor)
        else:
            energy = self.running_var
        scale = torch.rsqrt(energy / 2 + self.eps) * self.weight.abs()
        return x * scale[None, :, None, None] + self.bias[None, :, None, None]

    def extra_repr(self):
        return f'{super().extra_repr()}, sync={self.sync}'


@lru_cache(maxsize=None)
def _float_weights(packets):
    return dual_tree_packets().float(), complex_packet_matrix(packets).float()


def _fixed_weights(packets):
    # Computed once per packet choice (FFTs of the 32 kernels), copied per stem.
    filters, packet_weight = _float_weights(packets)
    return filters.clone(), packet_weight.clone()


def _is_sync_bn(norm_cfg):
    return norm_cfg is not None and norm_cfg.get('type') in ('SyncBN', nn.SyncBatchNorm)


@MODELS.register_module()
class CModStem(BaseModule):
    """The CMod first layer of Leterme et al. as a ResNet stem (host option
    ``stem_cfg=dict(type='mmext.CModStem', free_channels=40)``).

    Two branches of the same input, concatenated (free channels first):

    * **free channels** (``free_channels``, 40 in the paper's ResNet): the
      ResNet stem, i.e. 7x7 stride-2 convolution, norm (``norm_cfg``), ReLU,
      3x3 stride-2 max pooling;
    * **Gabor-like channels** (24): a learned 1x1 mix of the input channels to
      one luminance channel (init ``LUMINANCE_INIT`` for RGB), the depth-2
      dual-tree complex wavelet packet transform (DT-CWPT, stride 2; Kingsbury's
      ``qshift_a`` filters, fixed, see :func:`dual_tree_packets` and
      :func:`complex_packet_matrix`), the 16 packets of ``OFFICIAL_PACKETS``,
      a grouped learned real mixing of the complex packets to 24 complex maps
      (groups of ``OFFICIAL_MIX_*``; the same weight on real and imaginary
      part), subsampling by 2 (``x[:, :, ::2, ::2]``), the modulus of each
      complex map, :class:`BatchNormOnGaborModulus2d`, ReLU.

    The subsampling is done by the transform's own strides (stride 4 instead
    of stride 2 followed by taking every second sample, the same values) and
    before the 1x1 mixing, which commutes with it. With the official
    filters, packets, groups and padding, an even-sized input gives the
    official values. Differences from the official code: the wavelet branch
    is padded by one more zero at the end (``ceil(H / 4)`` at odd sizes; the
    official code center-crops the branches to the smaller size), and the
    official ``PermuteFeatmaps`` reshapes to ``(.., width, height)``, which
    scrambles non-square maps (it trained on square crops); here the packets
    keep their layout. The L1 penalty on the mixing weights is not part of
    the official ResNet runs (their commands pass no ``--has-l1loss``) and is
    not added.

    Norms: ``norm_cfg`` is the free channels' norm (the host fills it with
    its own, SyncBN in mmseg configs). The Gabor channels always use the
    energy norm, which is part of the model and trains at one image per
    device (statistics over space); it sums its energy across ranks when
    ``norm_cfg`` is SyncBN. torch's ``convert_sync_batchnorm`` (mmengine's
    ``sync_bn='torch'``) would replace the energy norm by a plain
    SyncBatchNorm: the forward refuses that with a one-line error (set
    ``norm_cfg=dict(type='SyncBN')`` instead).

    Args:
        in_channels (int): Input channels (3 for RGB, in RGB order as mmdet's
            ``bgr_to_rgb=True`` preprocessor gives, normalised).
        out_channels (int): ``free_channels + 24``.
        free_channels (int): Freely trained channels. Defaults to 40.
        norm_cfg (dict | None): Norm of the free channels. Defaults to BN.
        luminance_init (Sequence[float] | None): Initial 1x1 mix weights, one
            per input channel. Defaults to ``LUMINANCE_INIT`` (RGB only).
        packets (Sequence[int]): Complex packets feeding the mixing.
        mix_in, mix_groups, mix_out (Sequence[int]): Packets, groups and
            output maps of each mixing group (``sum(mix_in) ==
            len(packets)``, ``sum(mix_out) == 24``).
        init_cfg (dict | list[dict], optional): mmengine init config.

    Shape:
        ``(N, in_channels, H, W)`` -> ``(N, out_channels, ceil(H / 4),
        ceil(W / 4))``.

    Raises:
        ValueError: ``out_channels != free_channels + 24`` with
            ``free_channels >= 1``; ``luminance_init`` not one weight per
            input channel (or missing for ``in_channels != 3``); ``packets``
            not distinct indices in 0..31; mixing groups that do not divide
            their packets and outputs or do not add up.
        MMExtError: In the forward, when the energy norm was replaced by
            another norm class (``convert_sync_batchnorm``).
    """

    gabor_channels = 24
    host_norm_args = ('norm_cfg', )
    component_examples = (ComponentExample('stem', dict(free_channels=8), in_channels=3,
                                           out_channels=32), )

    def __init__(self, in_channels=3, out_channels=64, free_channels=40,
                 norm_cfg=dict(type='BN'), luminance_init=None, packets=OFFICIAL_PACKETS,
                 mix_in=OFFICIAL_MIX_IN, mix_groups=OFFICIAL_MIX_GROUPS,
                 mix_out=OFFICIAL_MIX_OUT, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        name = type(self).__name__
        if free_channels < 1 or out_channels != free_channels + self.gabor_channels:
            raise ValueError(
                f'{name}: out_channels ({out_channels}) must be free_channels '
                f'({free_channels} >= 1) + {self.gabor_channels} Gabor-like channels')
        if luminance_init is None:
            if in_channels != 3:
                raise ValueError(f'{name}: luminance_init (one weight per input channel) is '
                                 f'required for in_channels={in_channels}; the default is RGB')
            luminance_init = LUMINANCE_INIT
        if len(luminance_init) != in_channels:
            raise ValueError(f'{name}: luminance_init has {len(luminance_init)} weights for '
                             f'{in_channels} input channels')
        if len(set(packets)) != len(packets) or not all(0 <= p < 32 for p in packets):
            raise ValueError(f'{name}: packets must be distinct indices of the 32 complex '
                             f'packets (0..31), got {tuple(packets)}')
        if not (len(mix_in) == len(mix_groups) == len(mix_out)) or sum(mix_in) != len(packets) \
                or sum(mix_out) != self.gabor_channels or any(
                    n % g or m % g for n, g, m in zip(mix_in, mix_groups, mix_out)):
            raise ValueError(
                f'{name}: mixing groups mix_in={tuple(mix_in)}, mix_groups={tuple(mix_groups)}, '
                f'mix_out={tuple(mix_out)} must have one entry per group, groups dividing '
                f'their packets and outputs, sum(mix_in) = {len(packets)} packets and '
                f'sum(mix_out) = {self.gabor_channels}')
        self.in_channels, self.out_channels = in_channels, out_channels
        self.free_channels = free_channels
        self.mix_in, self.mix_groups, self.mix_out = tuple(mix_in), tuple(mix_groups), \
            tuple(mix_out)

        self.free = ConvModule(in_channels, free_channels, 7, stride=2, padding=3,
                               norm_cfg=norm_cfg, act_cfg=dict(type='ReLU'))
        self.free_pool = nn.MaxPool2d(3, stride=2, padding=1)

        self.luminance = nn.Parameter(torch.tensor(luminance_init, dtype=torch.float32))
        filters, packet_weight = _fixed_weights(tuple(packets))
        # Vertical pass: one kernel per (tree, packet); horizontal pass: the
        # same eight on each vertical response.
        self.register_buffer('vertical', filters.reshape(8, 1, -1, 1), persistent=False)
        self.register_buffer('horizontal', filters.reshape(8, 1, 1, -1).repeat(8, 1, 1, 1),
                             persistent=False)
        self.register_buffer('packet_weight', packet_weight, persistent=False)
        # The official mixing is an nn.Conv3d per group, default init
        # U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        self.mix_weights = nn.ParameterList()
        for n, g, m in zip(mix_in, mix_groups, mix_out):
            bound = 1 / math.sqrt(n // g)
            self.mix_weights.append(nn.Parameter(torch.empty(m, n // g).uniform_(-bound, bound)))
        self.gabor_norm = BatchNormOnGaborModulus2d(self.gabor_channels,
                                                    sync=_is_sync_bn(norm_cfg))
        self.gabor_act = nn.ReLU(inplace=True)

    def mixing_matrix(self):
        """The learned real mixing as a ``(24, len(packets))`` matrix (block
        diagonal over the groups, each group block diagonal over its
        convolution groups)."""
        blocks = []
        for w, n, g, m in zip(self.mix_weights, self.mix_in, self.mix_groups, self.mix_out):
            blocks += list(w.reshape(g, m // g, n // g).unbind(0))
        return torch.block_diag(*blocks)

    def complex_responses(self, x):
        """The mixed complex maps before the modulus, ``(N, 24, 2, ceil(H /
        4), ceil(W / 4))`` (real, imaginary)."""
        lum = F.conv2d(x, self.luminance.to(x.dtype).view(1, -1, 1, 1))
        lum = F.pad(lum, (PAD_BEFORE, PAD_AFTER, PAD_BEFORE, PAD_AFTER))
        # Stride 4 = the transform's stride 2, then CMod's x[:, :, ::2, ::2].
        y = F.conv2d(lum, self.vertical.to(lum.dtype), stride=(4, 1))
        y = F.conv2d(y, self.horizontal.to(y.dtype), stride=(1, 4), groups=8)
        mix = self.mixing_matrix()
        # Real weights on complex maps: the same weight on (re, im).
        weight = torch.kron(mix, torch.eye(2, device=mix.device, dtype=mix.dtype)) \
            @ self.packet_weight
        y = F.conv2d(y, weight.to(y.dtype)[:, :, None, None])
        return y.unflatten(1, (self.gabor_channels, 2))

    def forward(self, x):
        if type(self.gabor_norm) is not BatchNormOnGaborModulus2d:
            raise MMExtError(
                f'{type(self).__name__}: its energy norm was replaced by '
                f'{type(self.gabor_norm).__name__} (convert_sync_batchnorm / sync_bn=\'torch\'); '
                "set the backbone's norm_cfg=dict(type='SyncBN') instead")
        free = self.free_pool(self.free(x))
        # The modulus in float32 (no complex bfloat16); vector_norm's gradient
        # is 0, not NaN, where a response is exactly 0.
        z = self.complex_responses(x).float()
        gabor = self.gabor_act(self.gabor_norm(torch.linalg.vector_norm(z, dim=2)))
        return torch.cat([free, gabor.to(free.dtype)], dim=1)
