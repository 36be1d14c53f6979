import logging

from mmdet.models.layers import DropBlock
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from mmext.registry import HOOKS


@HOOKS.register_module()
class DropBlockScheduleHook(Hook):
    """The DropBlock paper's schedule: the drop probability of every DropBlock
    rises linearly from 0 to its configured value.

    Ghiasi et al. (arXiv 1810.12890, "Scheduled DropBlock") decrease
    ``keep_prob`` linearly from 1 to its target during training; a fixed
    ``keep_prob`` from the start hurt accuracy and made the result sensitive to
    it. Before every training iteration this hook sets ``drop_prob`` of every
    mmdet ``DropBlock`` of the model (mmext's :class:`~mmext.models.plugins.
    DropBlock` included) to ``target * min(iter / warmup_iters, 1)``, where
    ``target`` is the module's configured ``drop_prob`` read in
    ``before_train``: 0 at iteration 0, the target from ``warmup_iters`` on.

    mmdet's DropBlock has its own warm-up, a per-module forward counter
    (``warmup_iters``, 2000 by default); this hook replaces it and sets the
    modules' ``warmup_iters`` to 0 (logged), so the two are never multiplied.
    The counter alone is enough for one uninterrupted run with one forward per
    iteration and a warm-up of fixed length; the hook is needed because the
    counter counts forwards, not iterations (two forwards per step warm up
    twice as fast), is not saved in checkpoints (a resumed run starts its
    warm-up again), already drops at its first forward (``1 /
    warmup_iters``), and cannot follow the paper's schedule over the whole
    training (``warmup_iters=None``). The value here depends only on
    ``runner.iter``, so a resumed run continues the schedule.

    Args:
        warmup_iters (int | float, optional): Length of the linear rise in
            iterations. A float below 1 is a fraction of the whole training
            (``runner.max_iters``). Defaults to None: the whole training, the
            paper's schedule.

    Raises:
        ValueError: ``warmup_iters`` not positive.
    """

    priority = 'NORMAL'

    def __init__(self, warmup_iters=None):
        if warmup_iters is not None and warmup_iters <= 0:
            raise ValueError(f'DropBlockScheduleHook: warmup_iters={warmup_iters}; expected a '
                             'positive number of iterations, a fraction below 1 of the '
                             'training, or None for the whole training')
        self.warmup_iters = warmup_iters
        self._targets = []

    def drop_prob_at(self, target, it):
        """The drop probability at iteration ``it`` for a module whose
        configured (target) ``drop_prob`` is ``target``."""
        if self.warmup_iters is None or self.warmup_iters < 1:
            raise RuntimeError('warmup_iters is resolved in before_train; pass an int to use '
                               'the hook without a runner')
        return target * min(max(it, 0) / self.warmup_iters, 1.0)

    def before_train(self, runner):
        if self.warmup_iters is None:
            self.warmup_iters = runner.max_iters
        elif self.warmup_iters < 1:
            self.warmup_iters = max(1, round(self.warmup_iters * runner.max_iters))
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        self._targets = [(m, m.drop_prob) for m in model.modules() if isinstance(m, DropBlock)]
        counted = [m for m, _ in self._targets if m.warmup_iters]
        for m in counted:
            m.warmup_iters = 0
        if not self._targets:
            print_log('DropBlockScheduleHook: the model has no DropBlock; nothing to schedule '
                      '(add a DropBlock plugin or remove the hook)', logger='current',
                      level=logging.WARNING)
        else:
            print_log(f'DropBlockScheduleHook: {len(self._targets)} DropBlock module(s), '
                      f'drop_prob rising linearly over {self.warmup_iters} iterations'
                      + (f"; mmdet's own warm-up (warmup_iters) set to 0 on {len(counted)}"
                         if counted else ''), logger='current')
        self.set_drop_probs(runner.iter)

    def set_drop_probs(self, it):
        """Set every scheduled module's ``drop_prob`` for iteration ``it``."""
        for module, target in self._targets:
            module.drop_prob = self.drop_prob_at(target, it)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.set_drop_probs(runner.iter)
