"""Fixes for running the OpenMMLab 2.x stack on today's torch / numpy.

Everything here is applied once by ``import mmext`` and is idempotent. Each fix
is narrow on purpose: it makes the files and objects that mmengine itself
writes work again, and the metadata that DeiT / timm style training scripts
pickle next to the weights, and nothing else.
"""
import importlib.metadata
import importlib.util
import os.path as osp
import pickle
import sys

import numpy as np
import torch

_APPLIED = False


def _history_buffer_getattr(obj, name):
    """A ``getattr`` for the weights-only unpickler that resolves only
    ``HistoryBuffer.<statistic>``.

    mmengine's message hub pickles each ``HistoryBuffer`` together with its
    statistics methods, which protocol 4 writes as ``getattr(HistoryBuffer,
    'mean')``. Allow-listing the builtin ``getattr`` would let a checkpoint
    reach any attribute of any allow-listed object; this stand-in reaches
    exactly the statistics mmengine registered.
    """
    from mmengine.logging import HistoryBuffer

    # The four built-ins are only added to the class-level table when the
    # first buffer is created, which may not have happened in this process.
    allowed = {'min', 'max', 'current', 'mean', *HistoryBuffer._statistics_methods}
    if obj is HistoryBuffer and name in allowed:
        return getattr(obj, name)
    raise pickle.UnpicklingError(f'mmext refuses getattr({obj!r}, {name!r}) while loading a '
                                 'checkpoint with weights_only=True: only HistoryBuffer '
                                 'statistics are allowed')


def _empty_bytes(*args):
    """``builtins.bytes`` for the weights-only unpickler, answering only ``bytes()``.

    Pickle protocol 2 (``torch.save``'s default) writes a non-empty ``bytes``
    object as ``_codecs.encode(text, 'latin1')``, which torch allows, but the
    empty one as a call of ``builtins.bytes`` without arguments. numpy pickles
    an array's data as bytes, so every empty array (an empty mmengine
    ``HistoryBuffer`` holds two) needs that call. ``bytes(n)`` would allocate
    ``n`` bytes and ``bytes(obj)`` would run ``obj.__bytes__`` / iterate it;
    neither occurs in these files, so they stay refused.
    """
    if args:
        raise pickle.UnpicklingError('mmext refuses builtins.bytes with arguments while loading a '
                                     'checkpoint with weights_only=True: only bytes() (the empty '
                                     'byte string) is allowed')
    return b''


def training_script_safe_globals():
    """The plain metadata containers that DeiT / timm style training scripts
    pickle next to the weights (``{'model': ..., 'epoch': 299, 'args':
    argparse.Namespace(...)}``).

    Each is an attribute bag or a path value whose unpickling runs no code
    from the file: ``argparse.Namespace`` and ``types.SimpleNamespace``
    (created empty, then filled by ``__dict__.update``: neither defines
    ``__setstate__``), and ``pathlib`` paths (``args.output_dir=Path(...)``),
    read as pure paths, which parse strings and never touch the file system
    (a ``WindowsPath`` could not even be created on Linux).
    """
    import argparse
    import pathlib
    import types

    safe = [argparse.Namespace, types.SimpleNamespace,
            pathlib.PurePath, pathlib.PurePosixPath, pathlib.PureWindowsPath]
    # Python 3.13 moved the classes to pathlib._local; files name either module.
    for module in ('pathlib', 'pathlib._local'):
        for concrete, pure in (('Path', pathlib.PurePath),
                               ('PosixPath', pathlib.PurePosixPath),
                               ('WindowsPath', pathlib.PureWindowsPath),
                               ('PurePath', pathlib.PurePath),
                               ('PurePosixPath', pathlib.PurePosixPath),
                               ('PureWindowsPath', pathlib.PureWindowsPath)):
            safe.append((pure, f'{module}.{concrete}'))
    return safe


def mmengine_checkpoint_safe_globals():
    """The non-tensor globals found in checkpoints written by mmengine 0.10.x
    (``Runner.save_checkpoint``): message-hub history buffers and the numpy
    arrays / scalars they and the run metadata hold."""
    from mmengine.logging import HistoryBuffer

    # numpy 2 moved the pickling helpers to numpy._core; checkpoints written
    # under numpy 1 name numpy.core. Map both paths to the same callables.
    try:
        from numpy._core import multiarray as np_multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray as np_multiarray
    safe = [
        HistoryBuffer,
        (_history_buffer_getattr, 'builtins.getattr'),
        (_history_buffer_getattr, '__builtin__.getattr'),
        np.ndarray,
        np.dtype,
        (np_multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
        (np_multiarray._reconstruct, 'numpy._core.multiarray._reconstruct'),
        (np_multiarray.scalar, 'numpy.core.multiarray.scalar'),
        (np_multiarray.scalar, 'numpy._core.multiarray.scalar'),
        (_empty_bytes, 'builtins.bytes'),
        (_empty_bytes, '__builtin__.bytes'),
    ]
    # Pickled dtypes reference their concrete classes (numpy >= 1.25).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        safe += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return safe


def _allow_mmengine_checkpoints():
    """torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine
    0.10.x calls ``torch.load`` without the argument, so ``--resume`` and
    ``load_from`` of any checkpoint mmengine wrote fail, and so does
    ``init_cfg=dict(type='Pretrained')`` of a training script's checkpoint.
    Allow-list exactly the types these files hold instead of turning
    weights-only loading off."""
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is None:  # torch < 2.4 has no weights-only default to work around
        return
    add(mmengine_checkpoint_safe_globals() + training_script_safe_globals())


def is_installed(package):
    """``mmengine.utils.is_installed`` without ``pkg_resources``."""
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        spec = importlib.util.find_spec(package)
        return spec is not None and spec.origin is not None


def get_installed_path(package):
    """``mmengine.utils.get_installed_path`` without ``pkg_resources``: the
    folder of the package's top-level module, which is where mmdet and mmseg
    keep the ``.mim/configs`` that ``mmdet::`` / ``mmseg::`` bases point into."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        spec = importlib.util.find_spec(package)
        if spec is None:
            raise
        if spec.origin is None:
            raise RuntimeError(f'{package} is a namespace package, which is invalid '
                               'for `get_install_path`') from None
        return osp.dirname(spec.origin)
    location = str(dist.locate_file(''))
    possible = osp.join(location, package)
    if osp.exists(possible):
        return possible
    top_level = (dist.read_text('top_level.txt') or '').split()
    if not top_level:
        raise ValueError(f'can not infer the module name of {package}')
    return osp.join(location, top_level[0])


def _replace_pkg_resources_helpers():
    """setuptools >= 81 no longer ships ``pkg_resources``, which mmengine
    0.10.7 imports to resolve ``mmdet::`` / ``mmseg::`` config bases (and torch
    2.14 needs setuptools >= 77). Swap the two helpers for importlib.metadata
    versions wherever mmengine bound them."""
    if importlib.util.find_spec('pkg_resources') is not None:
        return
    import mmengine.utils
    import mmengine.utils.package_utils
    import mmengine.config.config
    for mod in (mmengine.utils.package_utils, mmengine.utils, mmengine.config.config,
                sys.modules.get('mmengine.hub.hub')):
        if mod is None:
            continue
        for name, fn in (('is_installed', is_installed),
                         ('get_installed_path', get_installed_path)):
            if hasattr(mod, name):
                setattr(mod, name, fn)


def apply_compat_patches():
    global _APPLIED
    if _APPLIED:
        return
    _allow_mmengine_checkpoints()
    _replace_pkg_resources_helpers()
    _APPLIED = True
