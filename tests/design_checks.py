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


def randomize_norms(module, seed=0):
    """Batch-norm statistics and affine parameters away from their init, so
    that an eval-mode comparison (against another implementation, or a
    folded / converted network) depends on every stored tensor. Returns
    ``module``."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2)
                m.weight.normal_(1, 0.2)
                m.bias.normal_(0, 0.2)
    return module


def assert_all_grads(module, out):
    """Every parameter receives a finite, non-zero-somewhere gradient from
    ``out`` (a tensor, or a tuple of them: a backbone's maps). A module
    without trainable parameters (DropBlock) has nothing to check."""
    if not any(p.requires_grad for p in module.parameters()):
        return
    module.zero_grad()
    outs = out if isinstance(out, (tuple, list)) else (out, )
    sum((o.float() ** 2).mean() for o in outs).backward()
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


def unit_norms(model):
    """``{name: norm}`` of every norm layer inside a unit of ``model`` that
    follows its host's norm: a module whose class declares non-empty
    ``host_norm_args`` (the protocol of :mod:`mmext.models.layers.unit_norm`;
    an empty tuple says the unit has no norm a host sets, e.g. HorNet's
    batch-free LayerNorms)."""
    from torch.nn.modules.batchnorm import _BatchNorm
    norms = {}
    for name, unit in model.named_modules():
        if not getattr(type(unit), 'host_norm_args', ()):
            continue
        for sub, m in unit.named_modules():
            if isinstance(m, (_BatchNorm, torch.nn.GroupNorm, torch.nn.LayerNorm)):
                norms[f'{name}.{sub}'.strip('.')] = m
    return norms


def run_or_one_value_error(model, x, backward=True):
    """Train-mode forward (+ backward) of ``x``: returns None if it runs, or
    the message of mmext's one-value-per-channel error. Anything else (torch's
    raw ``ValueError`` included) propagates and fails the test. Without
    ``backward`` the forward runs under ``no_grad`` (still batch statistics:
    whether a step runs is decided there)."""
    from mmext.models.layers.unit_norm import ONE_VALUE_PHRASE
    from mmext.utils.errors import MMExtError
    model.train()
    try:
        with torch.set_grad_enabled(backward):
            out = model(x)
    except MMExtError as exc:
        msg = str(exc)
        assert ONE_VALUE_PHRASE in msg and '\n' not in msg, msg
        for fix in ('>= 2 images per device', 'SyncBN', "num_groups=1", 'norm_eval=True'):
            assert fix in msg, (fix, msg)
        return msg
    outs = out if isinstance(out, (tuple, list)) else [out]
    # A parameter-free unit (DropBlock) on an input without grad has no graph.
    if backward and any(o.requires_grad for o in outs):
        sum((o.float() ** 2).mean() for o in outs).backward()
    assert all(torch.isfinite(o).all() for o in outs)
    return None


GN1 = dict(type='GN', num_groups=1)


def check_one_image_per_device(build, x, norm_args, raises=True, options=(None, GN1)):
    """The one-image-per-device contract of a unit (issue 12), for every
    design that normalises a pooled descriptor or has no norm at all.

    * its class (a backbone: its units' classes) declares
      ``host_norm_args`` (empty when it has no norm);
    * at ``x`` (batch 1) in training, the default build raises mmext's
      one-line error naming the argument (``raises=True``) or runs;
    * ``x`` doubled to batch 2 runs;
    * each argument in ``norm_args`` set to each of ``options`` (None and
      ``GN(num_groups=1)``) trains at batch 1 (forward and backward, finite).

    Args:
        build (callable): ``build(**overrides)`` returns a fresh module.
        x (Tensor): A batch-1 input.
        norm_args (Sequence[str]): The unit's norm arguments to exercise.
        raises (bool): Whether the default build must raise at batch 1.
        options (Sequence[dict | None]): Norm configs that must train at
            ``x``. GroupNorm needs more than one value per group too, so a
            one-channel norm on a 1x1 map can only be None.
    """
    module = build()
    # A unit declares it; a backbone design through its units (SDA's stages).
    assert any(isinstance(getattr(type(m), 'host_norm_args', None), tuple)
               for m in module.modules()), f'{type(module).__name__} declares no host_norm_args'
    msg = run_or_one_value_error(module, x)
    assert (msg is not None) == raises, msg
    if raises:
        assert any(arg in msg for arg in norm_args), msg
    assert run_or_one_value_error(build(), torch.cat([x, x])) is None
    for arg in norm_args:
        for cfg in options:
            assert run_or_one_value_error(build(**{arg: cfg}), x) is None, (arg, cfg)
