"""Cost figures of low-bit designs: binary / k-bit operations (BOPs) and the
effective model size at the real bit-widths.

A module is *low-bit* when it declares, as integer attributes of the module
(class or instance), ``weight_bits`` and ``activation_bits`` (1..32, 32 =
full precision) and they are not both 32: BWN (1 / 32), XNOR-Net (1 / 1),
QNN (k / k). It owns ``weight``, the full-precision shadow tensor of shape
``(C_out, C_in / groups, *kernel)`` (a convolution) or ``(out, in)`` (a
linear layer) that it quantises in its forward. The tools find such modules by
these declarations only (:func:`bit_widths`), never by class: a new low-bit
design declares the two integers in its own file and edits no tool.

Definitions (what ``get_flops.py``, the cost tables, the leaderboard and the
model zoo report):

* **MACs** of one call of a low-bit module: ``output.numel() *
  weight[0].numel()``, the multiply-adds of its convolution (or matrix
  product) with ``weight``, what mmengine's counter gives the same
  convolution. The module's auxiliary work (a norm, the XNOR input scale K, a
  scale multiply) is not in its MACs.
* **BOPs** of a low-bit module: ``MACs * weight_bits * activation_bits``, the
  usual first-order bit-operation count of the mixed-precision literature
  (Bayesian Bits, van Baalen et al., NeurIPS 2020, arXiv 2005.07093; it is
  the leading term of the count UNIQ, Baskin et al., arXiv 1804.10969,
  introduced, whose accumulator terms are left out here). A W1/A1 MAC is one
  BOP (an XNOR and a popcount bit), a BWN MAC (1 / 32) 32.
* Full-precision layers are **reported separately, not as BOPs**: FLOPs
  stay what :func:`mmext.analysis.flops.count_flops` counts for the whole
  model (every MAC one FLOP, the low-bit ones included, as the simulated
  fake-quant forward runs them in FP32), and *full-precision FLOPs* are
  FLOPs minus the low-bit MACs: the work left at full precision (stem, heads,
  shortcuts, norms). A reader who wants one figure forms it from these
  (Bi-Real Net's ``OPs = BOPs / 64 + FLOPs``, Liu et al., ECCV 2018, takes
  the full-precision FLOPs; a 32 x 32 convention takes ``BOPs + 1024 *
  full-precision FLOPs``).
* **Effective size**: the sum over the model's parameters of ``numel * bits``
  with a low-bit module's ``weight`` at its ``weight_bits`` and every other
  parameter (biases, norms, full-precision layers) at 32 bits; plus, at 32
  bits, the floating-point buffers a low-bit module keeps itself (e.g. stored
  per-filter scales or activation ranges). Scales a module recomputes from its
  weight at every call (BWN's mean |W| per filter) are not stored by it and
  not counted; a deployed model would add 4 bytes per output filter for them.
  In bytes: ``ceil(bits / 8)``, the tensors packed back to back.
"""
import dataclasses

import torch

from mmext.utils.errors import MMExtError

FULL_PRECISION_BITS = 32
_DECLARATIONS = ('weight_bits', 'activation_bits')


def bit_widths(module):
    """``(weight_bits, activation_bits)`` that ``module`` declares, else None.

    Raises:
        MMExtError: A module declaring only one of the two, or a value that
            is not an int in 1..32.
    """
    values = [getattr(module, name, None) for name in _DECLARATIONS]
    if all(v is None for v in values):
        return None
    cls = type(module).__name__
    if any(v is None for v in values):
        have, miss = (_DECLARATIONS if values[1] is None else _DECLARATIONS[::-1])
        raise MMExtError(f'{cls} declares {have} but not {miss}; a low-bit module declares '
                         'both (32 = full precision)')
    for name, v in zip(_DECLARATIONS, values):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= FULL_PRECISION_BITS:
            raise MMExtError(f'{cls}.{name} = {v!r}: expected an int in 1..'
                             f'{FULL_PRECISION_BITS} (32 = full precision)')
    return tuple(values)


def _low_bit_weight(name, module):
    weight = getattr(module, 'weight', None)
    if not isinstance(weight, torch.Tensor) or weight.dim() < 2:
        raise MMExtError(f'{name or "the model"} ({type(module).__name__}) declares weight_bits '
                         'and activation_bits but has no weight tensor (C_out, C_in / groups, '
                         '*kernel): declare them on the conv / linear module that owns the '
                         'quantised weight')
    return weight


def low_bit_modules(model):
    """The low-bit modules of ``model`` (declared bit-widths not both 32).

    Returns:
        list[tuple]: ``(name, module, weight_bits, activation_bits)`` in
        ``named_modules`` order.

    Raises:
        MMExtError: On a malformed declaration (see :func:`bit_widths`) or a
            declaring module without a ``weight`` tensor.
    """
    found = []
    for name, module in model.named_modules():
        widths = bit_widths(module)
        if widths is None or widths == (FULL_PRECISION_BITS, FULL_PRECISION_BITS):
            continue
        _low_bit_weight(name, module)
        found.append((name, module, *widths))
    return found


def macs_of_call(module, output):
    """Multiply-adds of one call of a low-bit module with output ``output``:
    ``output.numel() * weight[0].numel()`` (a conv: N * C_out * H_out * W_out
    outputs, C_in / groups * k_h * k_w each)."""
    return int(output.numel()) * int(module.weight[0].numel())


@dataclasses.dataclass(frozen=True)
class LowBitOps:
    """The work of one low-bit module in one forward.

    Attributes:
        type (str): Class name.
        weight_bits (int), activation_bits (int): As declared.
        macs (int): Multiply-adds of its convolution (all calls).
    """

    type: str
    weight_bits: int
    activation_bits: int
    macs: int

    @property
    def bops(self):
        return self.macs * self.weight_bits * self.activation_bits

    @property
    def precision(self):
        """``'W1/A1'``-style label."""
        return f'W{self.weight_bits}/A{self.activation_bits}'


class LowBitCounter:
    """Forward hooks on the low-bit modules of ``model`` recording the MACs of
    every call while the block runs; names are relative to ``model``.

    ``with LowBitCounter(model) as counter: model(x)``; then
    :attr:`layers` (``{name: LowBitOps}`` of the modules that ran),
    :meth:`macs` and :meth:`bops` (of a submodule by name prefix).
    """

    def __init__(self, model):
        self.modules = low_bit_modules(model)
        self.layers = {}
        self._handles = []

    def _hook(self, name, wb, ab):
        def hook(module, args, output):
            old = self.layers.get(name)
            macs = (old.macs if old else 0) + macs_of_call(module, output)
            self.layers[name] = LowBitOps(type(module).__name__, wb, ab, macs)
        return hook

    def __enter__(self):
        for name, module, wb, ab in self.modules:
            self._handles.append(module.register_forward_hook(self._hook(name, wb, ab)))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        return False

    def _within(self, prefix):
        return [ops for name, ops in self.layers.items()
                if not prefix or name == prefix or name.startswith(prefix + '.')]

    def macs(self, prefix=''):
        """Low-bit MACs of the module called ``prefix`` ('' = all)."""
        return sum(ops.macs for ops in self._within(prefix))

    def bops(self, prefix=''):
        """BOPs of the module called ``prefix`` ('' = all)."""
        return sum(ops.bops for ops in self._within(prefix))


def precision_summary(layers):
    """``'W1/A1 x 15, W32/A32 ...'``: how many low-bit modules at each
    precision (``layers``: an iterable of :class:`LowBitOps` or of
    ``(weight_bits, activation_bits)``)."""
    counts = {}
    for item in layers:
        wb, ab = (item.weight_bits, item.activation_bits) if isinstance(item, LowBitOps) \
            else item
        counts[(wb, ab)] = counts.get((wb, ab), 0) + 1
    return ', '.join(f'W{wb}/A{ab} x {n}' for (wb, ab), n in sorted(counts.items()))


def effective_bits(model):
    """Bits of ``model`` at its real bit-widths (module docstring): each
    parameter once (shared ones too), a low-bit module's ``weight`` at its
    ``weight_bits``, its own floating-point buffers and every other parameter
    at 32 bits.

    Returns:
        int
    """
    low = {}
    buffers = 0
    for name, module, wb, _ in low_bit_modules(model):
        low[id(module.weight)] = wb
        buffers += sum(b.numel() for b in module.buffers(recurse=False)
                       if b.is_floating_point())
    bits = FULL_PRECISION_BITS * buffers
    for p in model.parameters():  # shared parameters are yielded once
        bits += p.numel() * low.get(id(p), FULL_PRECISION_BITS)
    return int(bits)


def bits_to_bytes(bits):
    """Bytes of ``bits`` packed back to back: ``ceil(bits / 8)``."""
    return -(-int(bits) // 8)


def effective_bytes(model):
    """:func:`effective_bits` in bytes (``ceil(bits / 8)``)."""
    return bits_to_bytes(effective_bits(model))


def format_mbytes(nbytes):
    """Bytes as megabytes (10^6) with two decimals."""
    return f'{nbytes / 1e6:.2f}'


def format_gbops(bops):
    """BOPs as billions with two decimals, the unit of every BOPs column."""
    return f'{bops / 1e9:.2f}'


__all__ = ['bit_widths', 'low_bit_modules', 'macs_of_call', 'LowBitOps', 'LowBitCounter',
           'precision_summary', 'effective_bits', 'effective_bytes', 'bits_to_bytes',
           'format_mbytes', 'format_gbops', 'FULL_PRECISION_BITS']
