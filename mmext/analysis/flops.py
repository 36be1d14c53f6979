"""FLOP counting for mmext's designs: mmengine's ``FlopAnalyzer`` plus the
handles it lacks.

Every FLOP figure mmext prints (``get_flops.py``, the benchmark's throughput,
the docs tables, the model zoo) comes from :func:`count_flops`, so the tools
agree with each other. The convention is mmengine's (fvcore's): one
multiply-add is one FLOP; convolutions, matrix products, einsum, norms and a
few poolings / resamplings are counted; elementwise operations (activations,
attention or gate products applied to activations, residual additions) are
not, and the ops a trace met without a handle are reported, not guessed.

What mmengine misses and mmext adds:

* ``aten::scaled_dot_product_attention`` (fused attention, e.g. HAT-Net
  outside tracing, timm models): the two matrix products it stands for,
  ``q k^T`` and ``attn v``, i.e. ``batch * L * S * (E + Ev)`` for a query of
  ``L`` tokens of width ``E`` and ``S`` keys / values of widths ``E`` / ``Ev``
  -- what mmengine counts for the same attention written with ``@``.
* FFTs (``aten::fft_*``; HorNet's global filters): ``n * ceil(log2 n)`` per
  transformed signal of ``n`` real points (``n`` = product of the
  transformed sizes), the HorNet authors' convention (their ``calc_flops.py``
  counts ``N * C * ceil(log2 N)`` per call), here read off the dims the FFT
  actually transforms.
* per-sample dynamic kernels: the convolution with ``groups * N`` groups and
  the kernel-mixing matrix product are traced and counted already; what is
  not is a kernel modulated elementwise per sample (ODConv's spatial
  attention, TAdaConv's calibration). A module class that does such work
  declares it in its own file as a method ``extra_flops(inputs, output) ->
  int`` (the protocol of :mod:`mmext.models.layers.protocols`; ODConv and
  TAdaConv: one multiply per element of the per-sample kernel). Every module
  of the model that has one is hooked; its figure is added to the module and
  its ancestors in :attr:`FlopCount.by_module`, and to ``dynamic_kernel`` in
  :attr:`FlopCount.by_operator`.

Low-bit modules (declaring ``weight_bits`` / ``activation_bits``,
:mod:`mmext.analysis.low_bit`) change no FLOP figure: their convolutions
count one FLOP per multiply-add as every other (the fake-quant forward runs
them in FP32). Their MACs and BOPs are recorded next to the FLOPs
(:attr:`FlopCount.low_bit`, :attr:`FlopCount.bops`,
:attr:`FlopCount.full_precision_flops`).
"""
import collections
import dataclasses
import math
import warnings

import torch

from mmext.utils.errors import MMExtError

from .low_bit import LowBitCounter

# Traced names of the transforms, and whether the real signal is the output
# (inverse real FFTs) rather than the input.
_FFT_OPS = {
    'aten::fft_fft': ('1d', False), 'aten::fft_ifft': ('1d', False),
    'aten::fft_rfft': ('1d', False), 'aten::fft_irfft': ('1d', True),
    'aten::fft_fft2': ('2d', False), 'aten::fft_ifft2': ('2d', False),
    'aten::fft_rfft2': ('2d', False), 'aten::fft_irfft2': ('2d', True),
    'aten::fft_fftn': ('nd', False), 'aten::fft_ifftn': ('nd', False),
    'aten::fft_rfftn': ('nd', False), 'aten::fft_irfftn': ('nd', True),
}


def _shape(value):
    from mmengine.analysis.jit_handles import get_shape
    return get_shape(value)


def _ivalue(value):
    """The constant behind a traced argument (an int list is traced as a
    ``prim::ListConstruct`` of constants); None when it is not constant."""
    node = value.node()
    if node.kind() == 'prim::ListConstruct':
        items = [_ivalue(v) for v in node.inputs()]
        return None if any(i is None for i in items) else items
    try:
        return value.toIValue()
    except RuntimeError:
        return None


def sdpa_flop_jit(inputs, outputs):
    """``aten::scaled_dot_product_attention(q, k, v, ...)``: ``q k^T`` plus
    ``attn v``. Batch and head dims are read off the query (grouped-query
    attention repeats the keys for the query heads)."""
    q, k, v = (_shape(x) for x in inputs[:3])
    *batch, length, width = q
    keys = k[-2]
    return math.prod(batch) * length * keys * (width + v[-1])


def _fft_handle(op):
    rank, real_out = _FFT_OPS[op]

    def fft_flop_jit(inputs, outputs):
        in_shape = _shape(inputs[0])
        out_shape = _shape(outputs[0])
        size, dim = _ivalue(inputs[1]), _ivalue(inputs[2])
        if rank == '1d':
            dims = [-1 if dim is None else dim]
        elif rank == '2d':
            dims = list(dim) if dim else [-2, -1]
        elif dim is not None:
            dims = list(dim)
        elif size is not None:
            dims = list(range(-len(size), 0))
        else:
            dims = list(range(len(in_shape)))
        # The real signal: the output of an inverse real FFT, the (possibly
        # padded / trimmed to ``s``) input of a forward one, else the output
        # (complex transforms keep the size they transform).
        if real_out or not op.startswith('aten::fft_r'):
            shape = list(out_shape)
        else:
            shape = list(in_shape)
            if size is not None:
                sizes = [size] if isinstance(size, int) else list(size)
                for d, s in zip(dims, sizes):
                    shape[d] = s
        n = math.prod(shape[d] for d in dims)
        if n <= 1:
            return 0
        return math.prod(shape) * math.ceil(math.log2(n))

    return fft_flop_jit


#: Op handles mmext adds to mmengine's defaults (traced op name -> handle).
OP_HANDLES = {'aten::scaled_dot_product_attention': sdpa_flop_jit}
OP_HANDLES.update({op: _fft_handle(op) for op in _FFT_OPS})


def extra_flops_of(module):
    """The ``extra_flops(inputs, output)`` method ``module`` declares (FLOPs
    of one call that the trace does not see), else None."""
    fn = getattr(module, 'extra_flops', None)
    return fn if callable(fn) else None


@dataclasses.dataclass
class FlopCount:
    """FLOPs of one traced forward.

    Attributes:
        total (int): All counted FLOPs.
        by_module (dict[str, int]): Per module name ('' is the root), every
            level of the hierarchy.
        by_operator (dict[str, int]): Per op name (mmengine's keys, e.g.
            ``conv``, ``matmul``, ``fft_rfft2``, ``scaled_dot_product_attention``)
            and ``dynamic_kernel`` for the modules' ``extra_flops``.
        uncounted_ops (tuple[str]): Traced ops without any handle (0 FLOPs).
        low_bit (dict[str, LowBitOps]): Per low-bit module that ran (name as
            in ``by_module`` at the trace): its declared bit-widths and MACs
            (:mod:`mmext.analysis.low_bit`); empty for a full-precision model.
    """

    total: int
    by_module: dict
    by_operator: dict
    uncounted_ops: tuple = ()
    low_bit: dict = dataclasses.field(default_factory=dict)

    def of(self, name):
        """FLOPs of the module called ``name`` (0 when it did not run)."""
        return self.by_module.get(name, 0)

    @property
    def low_bit_macs(self):
        """Multiply-adds of the low-bit modules (in :attr:`total` as FLOPs)."""
        return sum(ops.macs for ops in self.low_bit.values())

    @property
    def bops(self):
        """Binary / k-bit operations: ``MACs * weight_bits *
        activation_bits`` summed over the low-bit modules (0 without any)."""
        return sum(ops.bops for ops in self.low_bit.values())

    @property
    def full_precision_flops(self):
        """FLOPs outside the low-bit convolutions: :attr:`total` minus
        :attr:`low_bit_macs` (:attr:`total` for a full-precision model)."""
        return self.total - self.low_bit_macs


def count_flops(model, inputs, op_handles=None):
    """Count the FLOPs of ``model(*inputs)`` with mmengine's FlopAnalyzer,
    mmext's :data:`OP_HANDLES` and the ``extra_flops`` of its modules.

    The model is traced as it is (call ``eval()`` first for inference
    figures); gradients are off. ``op_handles`` adds to or overrides
    mmext's handles; ``None`` as a value drops mmext's handle of that op
    (the op is then reported as uncounted unless mmengine has one).

    Returns:
        FlopCount

    Raises:
        MMExtError: A low-bit module whose traced FLOPs are fewer than the
            MACs of its weight (its convolution is hidden from the trace,
            e.g. inside a custom ``autograd.Function``), or a malformed
            ``weight_bits`` / ``activation_bits`` declaration.
    """
    from mmengine.analysis import FlopAnalyzer
    if not isinstance(inputs, tuple):
        inputs = (inputs, )
    handles = {op: fn for op, fn in dict(OP_HANDLES, **(op_handles or {})).items()
               if fn is not None}
    extra = collections.Counter()
    hooks = []

    def record(name, fn):
        def hook(module, args, output):
            extra[name] += int(fn(args, output))
        return hook

    for name, module in model.named_modules():
        fn = extra_flops_of(module)
        if fn is not None:
            hooks.append(module.register_forward_hook(record(name, fn)))
    try:
        with LowBitCounter(model) as low_bit:
            analyzer = FlopAnalyzer(model, inputs).set_op_handle(**handles)
            analyzer.unsupported_ops_warnings(False)
            analyzer.uncalled_modules_warnings(False)
            with torch.no_grad(), warnings.catch_warnings():
                # Shape-dependent Python branches are constant for a fixed
                # input; the tracer warns about each of them.
                warnings.simplefilter('ignore', torch.jit.TracerWarning)
                total = int(analyzer.total())
                by_module = {k: int(v) for k, v in analyzer.by_module().items()}
                by_operator = {k: int(v) for k, v in analyzer.by_operator().items()}
                uncounted = tuple(sorted(analyzer.unsupported_ops()))
    finally:
        for h in hooks:
            h.remove()
    for name, ops in low_bit.layers.items():
        if by_module.get(name, 0) < ops.macs:
            raise MMExtError(
                f'{name or "the model"} ({ops.type}) declares {ops.precision} and runs '
                f'{ops.macs} MACs with its weight, but the trace counted '
                f'{by_module.get(name, 0)} FLOPs in it: its convolution is hidden from the '
                'trace (e.g. run inside a custom autograd.Function); apply the Function to '
                'the weight / input only')
    extra = {name: flops for name, flops in extra.items() if flops}
    for name, flops in extra.items():
        parts = name.split('.') if name else []
        for i in range(len(parts) + 1):
            key = '.'.join(parts[:i])
            by_module[key] = by_module.get(key, 0) + flops
    if extra:
        by_operator['dynamic_kernel'] = sum(extra.values())
    return FlopCount(total=total + sum(extra.values()), by_module=by_module,
                     by_operator=by_operator, uncounted_ops=uncounted,
                     low_bit=dict(low_bit.layers))
