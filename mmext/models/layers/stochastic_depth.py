"""Stochastic depth (DropPath) on the residual branch of the ResNet hosts' blocks.

Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016 (arXiv
1603.09382): in training, the residual branch of a block is dropped for a whole
sample with probability ``p`` (the block is then its shortcut), and kept,
scaled by ``1 / (1 - p)``, otherwise; in eval mode the block is unchanged. The
rates rise linearly with depth: block ``i`` of the ``L`` blocks of a network
(counted over all stages, from 0) gets ``p_i = drop_path_rate * i / (L - 1)``,
timm's rule (``timm/models/resnet.py``, ``drop_blocks`` / ``make_blocks``),
computed by timm's ``calculate_drop_path_rates``: the first block is never
dropped, the last one at ``drop_path_rate`` (the paper's survival probability
also decays linearly, to 0.5 at its last block). The drop itself is timm's
``DropPath`` (``timm/layers/drop.py``, per-sample Bernoulli,
``scale_by_keep=True``), which mmext's whole-network backbones use too.

A host gives each block its rate after building the stages
(:func:`set_drop_path_rates`): a block that declares a residual branch
(:class:`DropPathMixin`) gets a ``drop_path`` child, a ``timm`` ``DropPath``,
when its rate is above 0. At ``drop_path_rate=0`` nothing is added: the
modules, the state dict and the arithmetic are those of the host without the
option. ``DropPath`` has no parameters or buffers, so the state dict is the
same at every rate.
"""
from timm.layers import DropPath, calculate_drop_path_rates


class DropPathMixin:
    """A residual block whose branch a host may drop: the block calls
    :meth:`drop_residual` on its residual branch, right before adding the
    shortcut. Without a ``drop_path`` child (rate 0, the default) it returns
    the branch itself, so the block computes exactly what it did before."""

    def drop_residual(self, branch):
        """``branch`` ``(N, C, H, W)``, in training zeroed per sample with
        the block's rate and the kept samples scaled by ``1 / (1 - rate)``;
        unchanged in eval mode or without a rate."""
        # Looked up in _modules, not as an attribute: a class attribute of the
        # same name would shadow the child nn.Module registers.
        drop_path = self._modules.get('drop_path')
        return branch if drop_path is None else drop_path(branch)


def set_drop_path_rates(host, stages, drop_path_rate):
    """Give every block of ``stages`` its rate of the linear rule over all of
    their blocks, in order.

    Args:
        host (str): Name for the error message (the backbone's class).
        stages (list): The stages, each an indexable sequence of blocks
            (mmdet's / mmseg's ``ResLayer``, SDA's stage).
        drop_path_rate (float): The last block's rate, in ``[0, 1)``.

    Raises:
        ValueError: ``drop_path_rate`` outside ``[0, 1)``, or a block with a
            rate above 0 that has no residual branch to drop (a ``block_cfg``
            block that is not a :class:`DropPathMixin`, e.g. ``MGBlock``).
    """
    if not 0 <= drop_path_rate < 1:
        raise ValueError(f'{host}: drop_path_rate={drop_path_rate}; expected a value in '
                         '[0, 1) (the rate of the last block)')
    if drop_path_rate == 0:
        return
    blocks = [stage[j] for stage in stages for j in range(len(stage))]
    # timm's helper: linspace(0, drop_path_rate, L), i.e. rate * i / (L - 1).
    for block, rate in zip(blocks, calculate_drop_path_rates(drop_path_rate, len(blocks))):
        if rate == 0:
            continue
        if not isinstance(block, DropPathMixin):
            raise ValueError(f'{host}: drop_path_rate={drop_path_rate}, but the block '
                             f'{type(block).__name__} has no residual branch to drop; set '
                             'drop_path_rate=0 for this host')
        block.drop_path = DropPath(rate)
