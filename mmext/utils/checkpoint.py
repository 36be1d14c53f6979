"""Checkpoint loading that says plainly when a checkpoint does not fit."""
import torch
from mmengine.runner.checkpoint import _load_checkpoint, _load_checkpoint_to_model

from .errors import MMExtError


def _state_dict_of(ckpt):
    if isinstance(ckpt, dict):
        for key in ('state_dict', 'model'):
            if key in ckpt and isinstance(ckpt[key], dict):
                return ckpt[key]
    return ckpt


def key_mismatch(model, state_dict):
    """(missing, unexpected) parameter/buffer names, ``module.`` prefixes ignored."""
    model_keys = set(model.state_dict())
    ckpt_keys = {k[len('module.'):] if k.startswith('module.') else k for k in state_dict}
    return sorted(model_keys - ckpt_keys), sorted(ckpt_keys - model_keys)


def _preview(keys, n=3):
    more = f' (+{len(keys) - n} more)' if len(keys) > n else ''
    return ', '.join(keys[:n]) + more


def load_matching_checkpoint(runner, path, strict=True):
    """Load ``path`` into ``runner.model``; with ``strict``, a checkpoint with
    missing or unexpected keys is an error that names them, rather than the
    warning mmengine logs before evaluating a half-random model."""
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    try:
        ckpt = _load_checkpoint(path, map_location='cpu')
    except FileNotFoundError:
        raise MMExtError(f'checkpoint file not found: {path}') from None
    state_dict = _state_dict_of(ckpt)
    if not isinstance(state_dict, dict) or not all(
            isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise MMExtError(f'{path} holds no state_dict (expected a dict of tensors, or one '
                         "under 'state_dict' / 'model')")
    missing, unexpected = key_mismatch(model, state_dict)
    if strict and (missing or unexpected):
        raise MMExtError(
            f'checkpoint {path} does not match the model: {len(missing)} missing keys'
            f'{" (" + _preview(missing) + ")" if missing else ""}, {len(unexpected)} unexpected'
            f' keys{" (" + _preview(unexpected) + ")" if unexpected else ""}; '
            'convert it or pass --allow-partial')
    _load_checkpoint_to_model(model, ckpt, strict=False)
    if isinstance(ckpt, dict) and 'meta' in ckpt and 'dataset_meta' in ckpt['meta']:
        model.dataset_meta = ckpt['meta']['dataset_meta']
    # The runner would otherwise load cfg.load_from again in test().
    runner._has_loaded = True
    return missing, unexpected
