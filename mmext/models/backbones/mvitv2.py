"""MViTv2 (Li et al., CVPR 2022) as a dense backbone: a thin adapter over
timm's implementation (``timm.models.mvitv2``).

timm builds the network (patch embedding, pooling attention with decomposed
relative positions and residual pooling, the stages); this module only

* runs its blocks one by one to collect the stride 4/8/16/32 maps, each
  through its own output LayerNorm (the dense form of Detectron2's MViTv2,
  ``scale{2..5}_norm``; absent from classification checkpoints);
* makes the relative-position tables follow the input size. timm sizes
  ``rel_pos_h`` / ``rel_pos_w`` for the 224 pretraining resolution and
  indexes them as they are, which runs out of range above 224 and puts the
  zero offset off-centre at any other size. Here each block is called with
  its tables linearly resized to ``2 * max(q, k) - 1`` entries per axis for
  the actual query / key sizes (Detectron2's and mmpretrain's rule) through
  :func:`torch.func.functional_call`; timm's attention code runs unchanged
  and gradients reach the stored 224-size tables;
* converts the official (facebookresearch/mvit) checkpoint layout with timm's
  own ``checkpoint_filter_fn``.
"""
import dataclasses
import functools
import re
from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models import mvitv2 as timm_mvitv2
from torch.utils.weak import WeakIdKeyDictionary

from mmext.registry import MODELS
from .base_backbone import DenseBackbone, checkpoint_call


def resize_rel_pos(table, length):
    """A ``(L, C)`` relative-position table linearly resampled to ``length`` rows."""
    if table.shape[0] == length:
        return table
    resized = F.interpolate(table.t().unsqueeze(0), size=length, mode='linear')
    return resized.squeeze(0).t()


# Resized tables for inference, per stored table (weakly held, so a dropped
# model drops its entries): {length: ((data_ptr, _version), resized)}.
_RESIZED_TABLES = WeakIdKeyDictionary()


def resized_rel_pos(table, length):
    """:func:`resize_rel_pos`, reused across calls while autograd does not
    record (inference at a repeated input size).

    The result is kept per ``(table, length)`` and reused only while the
    table's storage and version counter are those it was computed from; every
    in-place update (optimizer step, ``load_state_dict``, ``torch.no_grad``
    edits) bumps the counter and forces a recomputation. Edits through
    ``table.data`` bypass the counter and are not seen. When autograd records
    (training), the table is resized on every call: the resize is part of the
    graph that carries the gradient to the stored table.
    """
    if table.shape[0] == length:
        return table
    if torch.is_grad_enabled() and table.requires_grad or torch.jit.is_tracing():
        return resize_rel_pos(table, length)
    stamp = (table.data_ptr(), table._version)
    entries = _RESIZED_TABLES.setdefault(table, {})
    hit = entries.get(length)
    if hit is None or hit[0] != stamp:
        with torch.no_grad():
            hit = entries[length] = (stamp, resize_rel_pos(table, length))
    return hit[1]


def _pooled_size(size, pool):
    """Spatial size after one of timm's pooling convs (``None``: no pooling)."""
    if pool is None:
        return list(size)
    return [(s + 2 * p - k) // st + 1
            for s, k, st, p in zip(size, pool.kernel_size, pool.stride, pool.padding)]


@MODELS.register_module()
class MViTv2(DenseBackbone):
    """MViTv2 backbone (timm's network) returning stride 4/8/16/32 maps.

    Args:
        arch (str | dict): ``'tiny'``, ``'small'`` or ``'base'`` (also ``'t'``,
            ``'s'``, ``'b'`` or timm's ``'mvitv2_tiny'`` ...), or a dict of
            ``timm.models.mvitv2.MultiScaleVitCfg`` fields.
        pretrain_img_size (int): Resolution the relative-position tables are
            stored for (the official checkpoints': 224). Any input size runs;
            the tables are resized per forward.
        drop_path_rate (float): Stochastic depth, linear over the blocks.
        out_indices, frozen_stages, norm_eval, with_cp, init_cfg: see
            :class:`DenseBackbone`. Stage ``i`` holds its first block (the
            query pooling and channel projection); stage 0 also the patch
            embedding.
    """
    arch_settings = {
        'tiny': 'mvitv2_tiny',
        'small': 'mvitv2_small',
        'base': 'mvitv2_base',
    }
    arch_aliases = {'t': 'tiny', 's': 'small', 'b': 'base', 'mvitv2_tiny': 'tiny',
                    'mvitv2_small': 'small', 'mvitv2_base': 'base'}
    # One block per stage, one head, 16-128 channels (timm MultiScaleVitCfg
    # fields), for tests/test_backbone_contract.py.
    backbone_examples = (dict(arch=dict(depths=(1, 1, 1, 1), embed_dim=16, num_heads=1)), )
    default_init_cfg = [
        dict(type='TruncNormal', layer='Linear', std=.02, bias=0.),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
    ]
    # The classifier and the final norm (for pooled tokens) of the official file.
    official_drop_prefixes = ('head.', 'norm.')
    # benchmark.py --compare reference: timm's own MViTv2 (features_only),
    # then mmpretrain's.
    reference_implementations = {a: (f'timm:mvitv2_{a}', f'mmpretrain:MViT:{a}') for a in
                                 ('tiny', 'small', 'base')}
    expected_missing = (r'^out_norms\.', )

    def __init__(self, arch='tiny', pretrain_img_size=224, drop_path_rate=0.,
                 out_indices=(0, 1, 2, 3), frozen_stages=-1, norm_eval=False, with_cp=False,
                 init_cfg=None):
        super().__init__(out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        settings = self.resolve_arch(arch)
        # A name resolves to timm's config name, a dict holds MultiScaleVitCfg fields.
        cfg = (dataclasses.replace(timm_mvitv2.model_cfgs[settings]) if isinstance(settings, str)
               else timm_mvitv2.MultiScaleVitCfg(**settings))
        if len(cfg.depths) != 4 or cfg.use_cls_token or cfg.use_abs_pos:
            raise ValueError('MViTv2: the dense adapter needs 4 stages, no class token and '
                             'no absolute position embedding (the T/S/B settings)')
        net = timm_mvitv2.MultiScaleVit(cfg, img_size=pretrain_img_size, num_classes=0,
                                        drop_path_rate=drop_path_rate)
        # Only the feature extractor is kept: the pooled-token norm and the
        # classifier have no role in dense prediction.
        self.patch_embed = net.patch_embed
        self.stages = net.stages
        self.depths = tuple(cfg.depths)
        self.expand_attn = cfg.expand_attn
        self.out_channels = tuple(int(info['num_chs']) for info in net.feature_info)
        self.out_strides = tuple(int(info['reduction']) for info in net.feature_info)
        self.out_norms = nn.ModuleList(
            nn.LayerNorm(c, eps=cfg.norm_eps) for c in self.out_channels)

    def stage_modules(self, index):
        first = [self.patch_embed] if index == 0 else []
        return first + [self.stages[index], self.out_norms[index]]

    # -- any input size ---------------------------------------------------------
    @staticmethod
    def _resized_tables(block, feat_size):
        """Relative-position tables of ``block`` resized for a ``feat_size``
        input, or ``{}`` when the stored ones already fit."""
        attn = block.attn
        if getattr(attn, 'rel_pos_type', None) != 'spatial':
            return {}
        q_size = _pooled_size(feat_size, attn.pool_q)
        k_size = _pooled_size(feat_size, attn.pool_k)
        tables = {}
        for axis, name in enumerate(('rel_pos_h', 'rel_pos_w')):
            table = getattr(attn, name)
            length = 2 * max(q_size[axis], k_size[axis]) - 1
            if table.shape[0] != length:
                tables[f'attn.{name}'] = resized_rel_pos(table, length)
        return tables

    @staticmethod
    def _run_block(block, x, feat_size):
        tables = MViTv2._resized_tables(block, feat_size)
        if not tables:
            return block(x, feat_size)
        if torch.jit.is_tracing():
            # The stateless API refuses to run under the tracer (FLOP counting
            # at sizes other than the pre-training one); swap the tables in
            # for the duration of the call instead.
            params = block.attn._parameters
            saved = {name: params[name.split('.')[-1]] for name in tables}
            try:
                for name, table in tables.items():
                    params[name.split('.')[-1]] = table
                return block(x, feat_size)
            finally:
                for name, table in saved.items():
                    params[name.split('.')[-1]] = table
        return torch.func.functional_call(block, tables, (x, feat_size), strict=False)

    def forward(self, x):
        x, feat_size = self.patch_embed(x)
        feat_size = [int(s) for s in feat_size]
        outs = []
        for i, stage in enumerate(self.stages):
            for block in stage.blocks:
                fn = functools.partial(self._run_block, block, feat_size=feat_size)
                x, feat_size = checkpoint_call(fn, x, with_cp=self.with_cp)
                feat_size = [int(s) for s in feat_size]
            if i in self.out_indices:
                h, w = feat_size
                out = self.out_norms[i](x)
                # An (N, C, H, W) view of the (N, H*W, C) tokens, as timm's
                # features are: copying it to NCHW-contiguous memory cost 3% of
                # the backbone at 224x224 (four copies of every map), and the
                # neck's convolutions take either layout.
                outs.append(out.reshape(x.shape[0], h, w, -1).permute(0, 3, 1, 2))
        return tuple(outs)

    # -- checkpoints ------------------------------------------------------------
    @classmethod
    def convert_official(cls, state_dict):
        """facebookresearch/mvit keys (``blocks.{k}`` numbered over the whole
        network, ``blocks.{k}.proj`` for the channel projection,
        ``head.projection``) to timm's, by timm's ``checkpoint_filter_fn``.

        The stage depths come from the file: with ``expand_attn`` (T/S/B) a
        stage starts at block 0 and at every block holding a ``proj``."""
        if 'model_state' in state_dict and isinstance(state_dict['model_state'], dict):
            state_dict = state_dict['model_state']
        blocks = {int(m.group(1)) for k in state_dict
                  for m in [re.match(r'blocks\.(\d+)\.', k)] if m}
        if not blocks:
            return dict(state_dict)  # already timm / mmext layout
        starts = sorted({0} | {int(m.group(1)) for k in state_dict
                               for m in [re.match(r'blocks\.(\d+)\.proj\.weight$', k)] if m})
        ends = starts[1:] + [max(blocks) + 1]
        depths = tuple(e - s for s, e in zip(starts, ends))
        return timm_mvitv2.checkpoint_filter_fn(
            dict(state_dict), SimpleNamespace(depths=depths, expand_attn=True))

    def adapt_state_dict(self, state_dict):
        """Tables stored for another pretraining size are resampled to this
        model's (the runtime resizing then starts from them)."""
        own = self.state_dict()
        out = dict(state_dict)
        for k, v in state_dict.items():
            if 'rel_pos_' in k and k in own and v.shape != own[k].shape and \
                    v.shape[1:] == own[k].shape[1:]:
                out[k] = resize_rel_pos(v, own[k].shape[0])
        return out
