"""DropBlock as a ResNet plugin: mmdet's module, usable on any map size.

Ghiasi, Lin, Le, "DropBlock: A regularization method for convolutional
networks", NeurIPS 2018 (arXiv 1810.12890).
"""
from mmdet.models.layers import DropBlock as _DropBlock

from mmext.models.layers.protocols import ComponentExample
from mmext.registry import MODELS


@MODELS.register_module()
class DropBlock(_DropBlock):
    """mmdet's ``DropBlock`` with the block clipped to small maps.

    In training, seeds drawn with probability ``gamma`` on the valid
    ``(H - b + 1) x (W - b + 1)`` area of every channel and sample grow into
    ``b x b`` zeroed blocks, and the output is rescaled by the number of units
    over the number kept (over the whole batch); ``gamma = drop_prob * H * W /
    ((H - b + 1) (W - b + 1)) / b^2``, times mmdet's own warm-up factor
    ``min(1, forwards / warmup_iters)``. Eval mode is the identity. All of
    this is mmdet 3.3.0's ``mmdet/models/layers/dropblock.py``, unchanged.

    The one change: mmdet's module fails on a map smaller than its block (a
    negative mask size, e.g. ``block_size=7`` on the 4x5 stride-32 map of a
    97x131 input); here the block is clipped to the largest odd size that
    fits, ``min(block_size, m)`` with ``m = min(H, W)`` (minus one when even),
    as timm's ``DropBlock2d`` clips its block to the map. On maps at least
    ``block_size`` wide the output is mmdet's, draw for draw.

    As a plugin of an mmext ResNet host, e.g. in the last two stages after
    each bottleneck's conv3 (the residual branch, before the identity add)::

        plugins=[dict(cfg=dict(type='mmext.DropBlock', drop_prob=0.1,
                               block_size=7, warmup_iters=0),
                      position='after_conv3', stages=(False, False, True, True))]

    mmdet's own ``type='mmdet.DropBlock'`` works there too (it ignores the
    ``in_channels`` the plugin builder passes), on maps at least
    ``block_size`` wide. :class:`~mmext.engine.DropBlockScheduleHook` drives
    ``drop_prob`` of every DropBlock of a model by the runner's iteration
    (the paper's linear schedule) in place of the per-module counter.

    Args:
        in_channels (int, optional): Channels of the input (what a
            ``plugins=`` entry passes); the module does not depend on it.
            The first positional argument, as on every mmext plugin, where
            mmdet's class starts with ``drop_prob`` (``DropBlock(0.1, 7)``
            fails mmdet's ``drop_prob <= 1`` check: pass keywords).
        drop_prob (float): Target fraction of dropped units, in ``(0, 1]``
            (``1 - keep_prob`` of the paper). Defaults to 0.1 (the paper's
            keep_prob 0.9).
        block_size (int): Odd side ``b`` of the dropped blocks. Defaults to 7
            (the paper's ImageNet ResNet-50 setting).
        warmup_iters (int): mmdet's warm-up: ``gamma`` rises linearly over
            this many training forwards of the module. Defaults to 2000
            (mmdet's); 0 with :class:`~mmext.engine.DropBlockScheduleHook`.

    Shapes:
        ``(N, C, H, W) -> (N, C, H, W)``.

    Raises:
        AssertionError: an even ``block_size``, ``drop_prob`` outside
            ``(0, 1]`` or a negative ``warmup_iters`` (mmdet's checks).

    Source: mmdet 3.3.0 ``mmdet/models/layers/dropblock.py``; timm
    ``timm/layers/drop.py`` (block clipping).
    """

    _abbr_ = 'drop_block'
    # No norm inside: nothing for a host to pass.
    host_norm_args = ()
    component_examples = (ComponentExample('plugin', dict(drop_prob=0.1, block_size=3)),
                          ComponentExample('plugin', dict(drop_prob=0.2, block_size=7)))

    def __init__(self, in_channels=None, drop_prob=0.1, block_size=7, warmup_iters=2000):
        super().__init__(drop_prob, block_size, warmup_iters=warmup_iters)
        self.in_channels = in_channels

    def forward(self, x):
        """``x`` ``(N, C, H, W)`` with blocks dropped in training, unchanged
        in eval mode."""
        side = min(x.shape[-2:])
        fits = self.block_size if self.block_size <= side else side - (1 - side % 2)
        if not self.training or fits == self.block_size:
            return super().forward(x)
        # mmdet's forward and gamma read block_size; give them the clipped
        # one for this call only.
        full, self.block_size = self.block_size, fits
        try:
            return super().forward(x)
        finally:
            self.block_size = full
