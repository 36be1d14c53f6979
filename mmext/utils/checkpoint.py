"""The one way mmext reads checkpoints: ``init_cfg`` Pretrained loading of its
backbones, ``tools/test.py`` and the converter (``python -m mmext convert``).

Files and URLs are read by mmengine's ``CheckpointLoader`` (local paths,
``http(s)://``, ``torchvision://``, ``open-mmlab://``, ...) with torch's
``weights_only`` unpickler, which ``import mmext`` extends by exactly the
metadata types mmengine and DeiT / timm style training scripts write (see
:mod:`mmext.compat`). Any other Python object in a file is refused with an
error that names it; reading such a file is an explicit opt-in
(``weights_only=False``) for files the user trusts.
"""
import os
import pickle
import re
import warnings
from collections import OrderedDict
from contextlib import contextmanager

import torch

from .errors import MMExtError

#: Keys under which training scripts store the weights, in the order tried:
#: mmengine / mmcls (``state_dict``), DeiT / timm / ConvNeXt (``model``),
#: pycls / SlowFast (``model_state``).
STATE_DICT_KEYS = ('state_dict', 'model', 'model_state')

#: How to ask for the opt-in, in the error of a refused file.
TRUST_HINT = ("if you trust the file, read it with weights_only=False: "
              "init_cfg=dict(type='Pretrained', checkpoint=..., weights_only=False) of an mmext "
              'backbone, or convert it once with `python -m mmext convert TYPE SRC DST '
              '--no-weights-only` (the output loads without it)')

_REFUSED = (r'GLOBAL (\S+) was not an allowed global',
            r'unsupported GLOBAL (\S+) whose module',
            r'reduce for unrecognized function (.+?)(?: which belongs|$)',
            r'allowlisted via `add_safe_globals`,? but got (.+?)$',
            r'mmext refuses (.+?) while loading')


def refused_global(message):
    """The Python global that torch's weights-only unpickler refused, as its
    error ``message`` names it (``'mymodule.MyClass'``), or None."""
    for pattern in _REFUSED:
        m = re.search(pattern, message, flags=re.MULTILINE)
        if m:
            return m.group(1).strip()
    return None


def refused_message(filename, message):
    """One line for a file whose unpickling ``weights_only`` refused."""
    name = refused_global(message)
    what = f'the Python object {name}' if name else 'a Python object'
    return (f'{filename} holds {what}, which loading with weights_only=True refuses (it '
            f'is not a tensor, a plain container or allow-listed metadata); {TRUST_HINT}')


@contextmanager
def _unpickle_anything():
    """Let the ``torch.load`` calls inside mmengine's loaders, which pass no
    ``weights_only``, unpickle any object: torch honours this variable only
    where the caller left the argument out, so explicit calls keep theirs.
    It is process-wide while set: only the one explicit read runs under it."""
    key = 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'
    old = os.environ.get(key)
    os.environ[key] = '1'
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='Environment variable '
                                    'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD detected')
            yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def load_checkpoint(filename, map_location='cpu', weights_only=True):
    """Read a checkpoint file or URL as it was saved.

    Args:
        filename (str): Local path or URL in any scheme of mmengine's
            ``CheckpointLoader`` (``http(s)://``, ``torchvision://``,
            ``open-mmlab://``, ...).
        map_location (str): Device the tensors are mapped to. Defaults to
            ``'cpu'``.
        weights_only (bool): Unpickle with torch's weights-only unpickler
            (tensors, plain containers and the metadata types mmext
            allow-lists). ``False`` unpickles any Python object, which can run
            code from the file: only for files you trust. Defaults to True.

    Returns:
        The unpickled object (usually a dict).

    Raises:
        MMExtError: the file does not exist, or it holds a Python object
            that weights-only loading refuses (the error names it and the
            opt-in).
    """
    from mmengine.runner.checkpoint import CheckpointLoader

    filename = str(filename)
    try:
        if weights_only:
            return CheckpointLoader.load_checkpoint(filename, map_location=map_location)
        with _unpickle_anything():
            return CheckpointLoader.load_checkpoint(filename, map_location=map_location)
    except FileNotFoundError:
        raise MMExtError(f'checkpoint file not found: {filename}') from None
    except pickle.UnpicklingError as exc:
        if not weights_only:
            raise
        raise MMExtError(refused_message(filename, str(exc))) from exc


def _revise(key, revise_keys):
    for pattern, repl in revise_keys:
        key = re.sub(pattern, repl, key)
    return key


def state_dict_of(checkpoint, source='the checkpoint', revise_keys=((r'^module\.', ''), )):
    """The weights in an unpickled checkpoint.

    Args:
        checkpoint: What :func:`load_checkpoint` returned.
        source (str): How errors name the checkpoint (its path).
        revise_keys (Sequence[tuple[str, str]]): ``(pattern, replacement)``
            regex substitutions applied to every key, in mmengine's
            ``revise_keys`` convention. Defaults to removing the ``module.``
            prefix of (Distributed)DataParallel.

    Returns:
        dict[str, Tensor]: The dict under the first of :data:`STATE_DICT_KEYS`
        that holds a dict, else the checkpoint itself; keys revised.

    Raises:
        MMExtError: that dict is empty or holds something else than tensors.
    """
    state_dict = checkpoint
    if isinstance(checkpoint, dict):
        for key in STATE_DICT_KEYS:
            if isinstance(checkpoint.get(key), dict):
                state_dict = checkpoint[key]
                break
    if not isinstance(state_dict, dict) or not state_dict or not all(
            isinstance(v, torch.Tensor) for v in state_dict.values()):
        keys = ', '.join(f"'{k}'" for k in STATE_DICT_KEYS)
        found = (f' (top-level keys: {", ".join(map(str, list(checkpoint)[:6]))})'
                 if isinstance(checkpoint, dict) else '')
        raise MMExtError(f'{source} holds no state_dict{found}; expected a dict of tensors, '
                         f'or one under {keys}')
    revised = OrderedDict((_revise(k, revise_keys), v) for k, v in state_dict.items())
    # Module versions (e.g. BN before num_batches_tracked), as mmengine keeps them.
    metadata = getattr(state_dict, '_metadata', None)
    if metadata is not None:
        revised._metadata = OrderedDict(
            (_revise(k, revise_keys), v) for k, v in metadata.items())
    return revised


def read_state_dict(filename, map_location='cpu', weights_only=True,
                    revise_keys=((r'^module\.', ''), )):
    """The weights in a checkpoint file or URL: :func:`load_checkpoint`, then
    :func:`state_dict_of`.

    Returns:
        dict[str, Tensor]: State dict with revised keys (``module.`` removed).

    Raises:
        MMExtError: see :func:`load_checkpoint` and :func:`state_dict_of`.
    """
    checkpoint = load_checkpoint(filename, map_location=map_location,
                                 weights_only=weights_only)
    return state_dict_of(checkpoint, source=str(filename), revise_keys=revise_keys)


def key_mismatch(model, state_dict):
    """(missing, unexpected) parameter/buffer names, ``module.`` prefixes ignored."""
    model_keys = set(model.state_dict())
    ckpt_keys = {k[len('module.'):] if k.startswith('module.') else k for k in state_dict}
    return sorted(model_keys - ckpt_keys), sorted(ckpt_keys - model_keys)


def _preview(keys, n=3):
    more = f' (+{len(keys) - n} more)' if len(keys) > n else ''
    return ', '.join(keys[:n]) + more


def load_matching_checkpoint(runner, path, strict=True, weights_only=True):
    """Load ``path`` into ``runner.model``; with ``strict``, a checkpoint with
    missing or unexpected keys is an error that names them, rather than the
    warning mmengine logs before evaluating a half-random model.

    Args:
        runner (mmengine.runner.Runner): Its (possibly wrapped) model is loaded.
        path (str): Checkpoint file or URL (see :func:`load_checkpoint`).
        strict (bool): Refuse a checkpoint whose keys differ from the model's.
        weights_only (bool): See :func:`load_checkpoint`. Defaults to True.

    Returns:
        tuple[list[str], list[str]]: Missing and unexpected keys.

    Raises:
        MMExtError: the file is missing, holds a refused object or no state
            dict, or (``strict``) does not match the model.
    """
    from mmengine.runner.checkpoint import load_state_dict

    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    ckpt = load_checkpoint(path, weights_only=weights_only)
    state_dict = state_dict_of(ckpt, source=str(path))
    missing, unexpected = key_mismatch(model, state_dict)
    if strict and (missing or unexpected):
        raise MMExtError(
            f'checkpoint {path} does not match the model: {len(missing)} missing keys'
            f'{" (" + _preview(missing) + ")" if missing else ""}, {len(unexpected)} unexpected'
            f' keys{" (" + _preview(unexpected) + ")" if unexpected else ""}; '
            'convert it or pass --allow-partial')
    load_state_dict(model, state_dict, strict=False)
    if isinstance(ckpt, dict) and isinstance(ckpt.get('meta'), dict) \
            and 'dataset_meta' in ckpt['meta']:
        model.dataset_meta = ckpt['meta']['dataset_meta']
    # The runner would otherwise load cfg.load_from again in test().
    runner._has_loaded = True
    return missing, unexpected
