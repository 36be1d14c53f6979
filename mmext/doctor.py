"""``python -m mmext doctor``: what is installed, and what is wrong with it.

Each check prints one line ``[ ok ]``, ``[warn]`` or ``[FAIL]`` with the fix for
anything that is not ok. The exit status is 1 when a check fails.
"""
import importlib
import importlib.metadata
import io
import os
import sys

# Versions the pinned stack is tested with (tools/constraints.txt).
EXPECTED = {
    'torch': '2.14.1',
    'torchvision': '0.29.1',
    'mmengine': '0.10.7',
    'mmcv': '2.1.0',
    'mmdet': '3.3.0',
    'mmseg': '1.2.2',
}
SETUP = 'run `bash tools/setup_env.sh`'


class Report:

    def __init__(self, out=sys.stdout):
        self.out = out
        self.failed = 0

    def line(self, status, what, fix=None):
        if status == 'FAIL':
            self.failed += 1
        tail = f'  -> {fix}' if fix else ''
        print(f'[{status:^4}] {what}{tail}', file=self.out)


def _version(name, dist=None):
    try:
        mod = importlib.import_module(name)
    except Exception as exc:  # noqa: B902  (any import failure is the finding)
        return None, exc
    version = getattr(mod, '__version__', None)
    if version is None:
        try:
            version = importlib.metadata.version(dist or name)
        except importlib.metadata.PackageNotFoundError:
            version = '?'
    return version, None


def _install_kind(direct_url):
    """'source checkout' for an editable install, 'installed package' for a
    wheel; ``direct_url`` is the text of the distribution's
    ``direct_url.json`` (PEP 610; None when pip did not write one, e.g. an
    install from an index)."""
    import json
    try:
        editable = json.loads(direct_url or '{}').get('dir_info', {}).get('editable', False)
    except ValueError:
        editable = False
    return 'source checkout' if editable else 'installed package'


def _mmext_origin():
    """``(version, folder, kind)`` of the mmext this process imports; kind is
    from the install metadata (:func:`_install_kind`), or 'not installed'
    when mmext is imported from a folder on ``sys.path`` without an install
    (its configs, ``mmext/.mim/``, are then missing)."""
    import mmext
    folder = os.path.dirname(os.path.abspath(mmext.__file__))
    try:
        dist = importlib.metadata.distribution('mmext')
    except importlib.metadata.PackageNotFoundError:
        return mmext.__version__, folder, 'not installed'
    return mmext.__version__, folder, _install_kind(dist.read_text('direct_url.json'))


def check_versions(r):
    import platform
    # Which mmext runs (a checkout or a wheel, possibly another than the one
    # being edited) is the first thing to know when something misbehaves.
    version, folder, kind = _mmext_origin()
    r.line('ok', f'mmext {version} from {folder} ({kind})')
    r.line('ok', f'python {platform.python_version()} on {platform.machine()}')
    for name, want in EXPECTED.items():
        have, exc = _version(name)
        if have is None:
            from .utils.errors import explain
            r.line('FAIL', f'{name} does not import: {type(exc).__name__}: {exc}',
                   explain(exc) or SETUP)
        elif have.split('+')[0] != want:
            r.line('warn', f'{name} {have} (tested: {want})', SETUP)
        else:
            r.line('ok', f'{name} {have}')
    for name, note in (('numpy', None), ('cv2', 'opencv'), ('timm', None),
                       ('pycocotools', None)):
        have, exc = _version(name)
        label = note or name
        r.line('ok' if have else 'FAIL', f'{label} {have}' if have else f'{label} missing',
               None if have else SETUP)


def check_mmcv_ops(r):
    try:
        import mmcv.ops  # noqa: F401
        from mmcv.ops import nms, roi_align  # noqa: F401
        from mmcv.utils import ext_loader
        ext = ext_loader.load_ext('_ext', ['nms'])
    except Exception as exc:  # noqa: B902
        from .utils.errors import explain
        r.line('FAIL', f'mmcv compiled ops: {type(exc).__name__}: {exc}', explain(exc) or SETUP)
        return
    import torch
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]])
    keep = nms(boxes, torch.tensor([0.9, 0.8]), 0.5)[1]
    ok = keep.tolist() == [0]
    r.line('ok' if ok else 'FAIL', f'mmcv compiled ops load ({ext.__name__}), nms on CPU '
           + ('works' if ok else 'gives a wrong result'), None if ok else SETUP)


def check_device(r):
    import torch
    if torch.cuda.is_available():
        r.line('ok', f'GPU: {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}, '
               f'{torch.cuda.device_count()} device(s))')
        try:
            from mmcv.ops import nms
            boxes = torch.tensor([[0., 0., 10., 10.]], device='cuda')
            nms(boxes, torch.tensor([0.9], device='cuda'), 0.5)
            r.line('ok', 'mmcv CUDA ops work')
        except Exception as exc:  # noqa: B902
            r.line('FAIL', f'mmcv CUDA ops: {exc}',
                   'rebuild mmcv with CUDA ops: MMEXT_MMCV_OPS=cuda bash tools/setup_env.sh')
    else:
        r.line('ok', f'no GPU: running on CPU ({os.cpu_count()} cores, torch built with '
               f'CUDA {torch.version.cuda or "none"}); distributed runs use gloo')


def check_checkpoint_loading(r):
    """A checkpoint the way mmengine writes it must load under torch's
    weights-only default (the ``--resume`` failure)."""
    import numpy as np
    import torch
    from mmengine.logging import HistoryBuffer

    import mmext  # noqa: F401  (applies the allow-list)
    buf = HistoryBuffer()
    buf.update(1.0)
    payload = dict(message_hub=dict(log_scalars={'train/loss': buf}),
                   meta=dict(seed=np.int64(0), arr=np.zeros(2)))
    f = io.BytesIO()
    torch.save(payload, f)
    f.seek(0)
    try:
        torch.load(f)
        r.line('ok', 'mmengine checkpoints load with weights_only=True (resume works)')
    except Exception as exc:  # noqa: B902
        r.line('FAIL', f'mmengine checkpoint does not load: {str(exc).splitlines()[0]}',
               'import mmext before loading (the tools do); see docs/get_started.md FAQ')


def check_registry(r):
    try:
        import mmext.registry  # noqa: F401
        from mmdet.registry import HOOKS as DET_HOOKS
        from mmseg.registry import HOOKS as SEG_HOOKS
        from mmengine.registry import DefaultScope
        for lib, reg in (('mmdet', DET_HOOKS), ('mmseg', SEG_HOOKS)):
            with DefaultScope.overwrite_default_scope(lib):
                if reg.get('mmext.TrainingCurveHook') is None:
                    raise KeyError(f'mmext.TrainingCurveHook not reachable from {lib}')
        r.line('ok', "'mmext.<Name>' components resolve from mmdet and mmseg configs")
    except Exception as exc:  # noqa: B902
        r.line('FAIL', f'mmext registry: {exc}', 'reinstall mmext: pip install -e . --no-deps')


def check_data(r):
    from .utils.embedded import default_data_root
    root = default_data_root()
    if os.path.isfile(os.path.join(root, 'embedded_meta.json')):
        r.line('ok', f'embedded data at {root}')
    else:
        r.line('warn', f'no embedded data at {root}',
               'it is generated on first use, or run `python tools/generate_data.py`')


def run(out=sys.stdout):
    r = Report(out)
    check_versions(r)
    for check in (check_mmcv_ops, check_device, check_checkpoint_loading, check_registry,
                  check_data):
        try:
            check(r)
        except Exception as exc:  # noqa: B902  (a broken check must not hide the others)
            r.line('FAIL', f'{check.__name__}: {type(exc).__name__}: {exc}', SETUP)
    print(f'\n{"all checks passed" if not r.failed else f"{r.failed} check(s) failed"}',
          file=out)
    return 1 if r.failed else 0
