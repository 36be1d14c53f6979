"""One-line explanations for the errors users of this stack hit most.

The tools print ``mmext: error: <what> (<fix>)`` instead of a traceback from
deep inside mmcv/mmengine; ``MMEXT_DEBUG=1`` re-raises the original. The same
table feeds ``python -m mmext doctor`` and docs/get_started.md's FAQ.
"""
import difflib
import inspect
import os
import re
import sys
from contextlib import contextmanager


class MMExtError(Exception):
    """An error whose message is already the one line a user should read."""


def _registry_hint(m):
    name, scope, registry = m.group('name'), m.group('scope'), m.group('registry')
    short = name.split('.')[-1]
    hint = ''
    try:
        import mmext.registry  # noqa: F401
        from mmengine.registry import MODELS
        names = set()

        def collect(reg):
            names.update(f'{reg.scope}.{k}' for k in reg.module_dict)
            for child in reg.children.values():
                collect(child)

        collect(MODELS)
        close = difflib.get_close_matches(short, [n.split('.', 1)[1] for n in names], n=3)
        full = sorted({n for n in names if n.split('.', 1)[1] in close})
        if full:
            hint = f"; close matches: {', '.join(full)}"
    except Exception:  # the hint is a courtesy; never mask the real error
        pass
    return (f"unknown component type '{name}' (not in the {scope} '{registry}' registry{hint}). "
            "mmext components are named 'mmext.<Name>'; components of other libraries need "
            "their scope, e.g. 'mmdet.ResNet'")


def _one_value_hint(m):
    unit, name, arg = m.group('unit'), m.group('name') or m.group('gname'), m.group('arg')
    fixes = ('in training a BatchNorm needs > 1 value per channel and one image per device '
             'gives it one; train with >= 2 images per device, SyncBN across >= 2 GPUs (the '
             'mmext ResNet hosts pass a SyncBN norm_cfg to their units; CPU runs convert it to '
             'BN)')
    docs = ' (docs/designs/README.md, "Norms inside the units")'
    if unit:
        where = f"the BatchNorm of {unit}{' ' + repr(name) if name else ''}"
        return (f"{where} got one value per channel: {fixes}, {arg}=dict(type='GN', "
                f"num_groups=1) or {arg}=None in the unit's cfg (block_conv_cfg / dcn / "
                f'block_cfg / stem_cfg / the plugin cfg), or norm_eval=True{docs}')
    if name:
        top = name.split('.')[0]
        return (f"the BatchNorm {name!r} got one value per channel: {fixes}, a norm without "
                f"batch statistics there (model.{top}.norm_cfg=dict(type='GN', num_groups=32)), "
                f'or norm_eval=True where the module offers it{docs}')
    return ('a BatchNorm got one value per channel (a pooled descriptor inside a unit such '
            "as an attention or dynamic convolution, the 1x1 pooling branch of mmseg's "
            f"UPerHead, or any BN on a 1x1 map): {fixes}, a norm without batch statistics in "
            "the norm_cfg of the module that builds it (GN, or a unit's attn_norm_cfg=None), "
            f'or norm_eval=True{docs}; mmext names the module when it runs through its tools')


def _weights_only_hint(m):
    from .checkpoint import TRUST_HINT, refused_global
    name = refused_global(m.string)
    what = f'the Python object {name}' if name else 'a Python object'
    return (f'torch refused to unpickle {what} in a checkpoint with weights_only=True; '
            'checkpoints written by mmengine and by DeiT / timm style training scripts load '
            "once `import mmext` has run (use the mmext tools or custom_imports=dict(imports="
            f"['mmext'])); for other objects: {TRUST_HINT}")


#: Top-level modules that tools/setup_env.sh installs (tools/constraints.txt and
#: what the stack imports): a missing one means a broken environment.
STACK_MODULES = {'torch', 'torchvision', 'mmcv', 'mmengine', 'mmdet', 'mmseg', 'timm',
                 'pycocotools', 'numpy', 'cv2', 'matplotlib', 'ftfy', 'regex', 'scipy',
                 'shapely', 'terminaltables', 'prettytable', 'yaml', 'mmext'}


def _missing_module_hint(m):
    mod = m.group('mod')
    if mod.split('.')[0] in STACK_MODULES:
        return (f"Python module '{mod}' is missing; run `bash tools/setup_env.sh` (it installs "
                'the pinned stack into .venv) and use .venv/bin/python')
    # Not part of the stack: a user's own code that a config (custom_imports) or a
    # trusted checkpoint (a pickled class) refers to.
    return (f"Python module '{mod}' cannot be imported; it is not part of mmext's stack: if a "
            'config (custom_imports) or a checkpoint (a pickled class) refers to your own '
            "code, put that code's folder on PYTHONPATH (e.g. `PYTHONPATH=. python ...`), "
            'or install the package that provides it')


# (pattern searched in the error text, one-line explanation with the fix).
# The explanation is a string or a function of the regex match.
def _host_option_hint(m):
    """An mmext ResNet host option given to mmdet's / mmseg's ResNet family
    (the config kept their ``type``); None for any other argument."""
    from mmext.models.backbones.resnet import ResNet
    params = inspect.signature(ResNet.__init__).parameters.values()
    if m.group('arg') not in {p.name for p in params if p.kind == p.KEYWORD_ONLY}:
        return None
    # mmdet's ResNetV1d / ResNeXt and mmseg's ResNetV1c pass it on to ResNet,
    # so the class in the message does not say which host was named.
    return (f"mmdet's / mmseg's ResNet family takes no {m.group('arg')}=, an option of "
            "mmext's ResNet hosts: name the mmext host of the same network as the backbone "
            "type (mmext.ResNet, mmext.ResNetV1c, mmext.ResNetV1d, mmext.ResNeXt; same "
            'arguments and weights, docs/designs/resnet_host.md)')


KNOWN_ERRORS = [
    (r"(?P<name>[\w.]+) is not in the (?P<scope>[\w]+)::(?P<registry>[\w ]+) registry",
     _registry_hint),
    (r"No module named 'mmcv\._ext'",
     "mmcv is installed without its compiled ops (mmcv-lite or a failed build); "
     "run `bash tools/setup_env.sh`, which builds mmcv 2.1.0 with ops and caches the wheel"),
    (r"MMCV==(?P<ver>[\w.]+) is used but incompatible",
     lambda m: f"mmcv {m.group('ver')} is installed but mmdet 3.3 / mmseg 1.2 need "
               "2.0.0rc4 <= mmcv < 2.2.0; run `bash tools/setup_env.sh` (mmcv 2.1.0)"),
    (r"(?P<cls>ResNe\w*)\.__init__\(\) got an unexpected keyword argument '(?P<arg>\w+)'",
     _host_option_hint),
    (r"Weights only load failed|weights_only", _weights_only_hint),
    (r"No module named '(?P<mod>[\w.]+)'", _missing_module_hint),
    (r"failed to load image: (?P<path>\S+)|Unable to load image|imdecode|"
     r"cannot identify image file (?P<path2>\S+)",
     lambda m: f"corrupt or unreadable image file {m.group('path') or m.group('path2')} "
               "(OpenCV could not decode it); replace or remove it from the dataset"),
    # mmengine's message when a config names an mmext:: base before mmext registered it.
    (r"does not support to load mmext config",
     "the config has an `mmext::` base but was read before `import mmext` (which teaches "
     "mmengine where mmext's configs are); use mmext's tools (`python -m mmext train|test "
     "...`, tools/train.py) or `import mmext` before `Config.fromfile`"),
    # Raised by torch, or as an MMExtError by mmext.models.layers.unit_norm.
    (r"Expected more than 1 value per channel|"
     r"(?:(?P<unit>[A-Za-z]\w*)(?: '(?P<name>[\w.]*)')?|'(?P<gname>[\w.]+)'): "
     r"\w+(?: \([^)]*\))? \((?P<arg>\w+)\) sees one value per channel in training",
     _one_value_hint),
]


def _upstream_basic_block_refusal(exc):
    """True for the bare ``AssertionError('Not implemented yet.')`` that
    mmdet's / mmseg's ``BasicBlock.__init__`` raises for ``plugins`` or
    ``dcn``: the text alone is too common, the frame that raised it is not."""
    if not isinstance(exc, AssertionError) or 'Not implemented yet' not in str(exc):
        return False
    tb, last = exc.__traceback__, None
    while tb is not None:
        last, tb = tb.tb_frame.f_code, tb.tb_next
    path = last.co_filename.replace(os.sep, '/') if last else ''
    return (last is not None and last.co_name == '__init__'
            and re.search(r'(mmdet|mmseg)/models/backbones/resnet\.py$', path) is not None)


def explain(exc):
    """Return the one-line explanation of ``exc`` (or of an exception it was
    raised from), or None if it is not a known error."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, MMExtError):
            return str(exc)
        text = f'{type(exc).__name__}: {exc}'
        for pattern, message in KNOWN_ERRORS:
            m = re.search(pattern, text)
            if m:
                return message(m) if callable(message) else message
        if isinstance(exc, FileNotFoundError):
            return f"file not found: {exc.filename or exc}"
        if _upstream_basic_block_refusal(exc):
            return ("mmdet's / mmseg's ResNet BasicBlock (depth 18 / 34) takes no plugins and no "
                    "dcn ('Not implemented yet.'); use type='mmext.ResNet' (or "
                    "'mmext.ResNetV1c' in an mmseg config) as the backbone, which takes both on "
                    'every depth (docs/designs/resnet_host.md)')
        exc = exc.__cause__ or exc.__context__
    return None


@contextmanager
def friendly_errors(prog='mmext'):
    """Turn known errors into ``<prog>: error: ...`` and exit status 1."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: B902
        msg = explain(exc)
        if msg is None or os.environ.get('MMEXT_DEBUG'):
            raise
        print(f'{prog}: error: {msg}', file=sys.stderr)
        sys.exit(1)
