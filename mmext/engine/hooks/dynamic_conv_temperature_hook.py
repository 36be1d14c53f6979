from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmext.registry import HOOKS


def anneals_temperature(module):
    """Whether ``module``'s class declares ``annealed_temperature = True``:
    its ``temperature`` is then set by :class:`DynamicConvTemperatureHook`
    (a class attribute, so that an unrelated ``temperature``, e.g. of a
    positional encoding, is never touched)."""
    return getattr(type(module), 'annealed_temperature', False) is True


@HOOKS.register_module()
class DynamicConvTemperatureHook(Hook):
    """Anneal the attention temperature of dynamic convolutions.

    Before every training iteration (or epoch, with ``by_epoch=True``) sets
    ``temperature`` of every module of the model whose class declares
    ``annealed_temperature = True`` (the protocol of
    :mod:`mmext.models.layers.protocols`; today
    :class:`~mmext.models.layers.DynamicConv` and
    :class:`~mmext.models.layers.ODConv`) to
    ``start + (end - start) * min(step / num_steps, 1)``: linear from
    ``start`` to ``end`` over the first ``num_steps`` steps, then ``end``.
    Both DY-CNN and the official ODConv training anneal from 30 to 1 over the
    first 10 epochs; a near-uniform attention early on lets every candidate
    kernel learn before the attention commits to a few of them. Leave the
    hook out when fine-tuning from weights trained at temperature 1 (e.g. the
    official ImageNet ODConv checkpoints in a detector).

    The value depends only on the runner's counter, so a resumed run picks up
    where it left off.

    Args:
        start (float): Temperature at step 0. Defaults to 30.0.
        end (float): Temperature from ``num_steps`` on. Defaults to 1.0.
        by_epoch (bool): Count epochs instead of iterations. Defaults to
            False.
        num_steps (int | float, optional): Length of the annealing, in
            iterations or epochs. A float below 1 is a fraction of the whole
            training (``runner.max_iters`` or ``runner.max_epochs``).
            Defaults to None: 10 epochs (the paper's schedule), converted to
            iterations with the length of the train dataloader when
            ``by_epoch`` is False.
    """

    priority = 'NORMAL'

    def __init__(self, start=30.0, end=1.0, by_epoch=False, num_steps=None):
        if num_steps is not None and num_steps <= 0:
            raise ValueError(f'num_steps must be positive, got {num_steps}')
        self.start = float(start)
        self.end = float(end)
        self.by_epoch = by_epoch
        self.num_steps = num_steps
        self._last = None

    def temperature_at(self, step):
        """The temperature at iteration / epoch ``step``."""
        if self.num_steps is None or self.num_steps < 1:
            raise RuntimeError('num_steps is resolved in before_train; pass an int to use '
                               'the hook without a runner')
        progress = min(max(step, 0) / self.num_steps, 1.0)
        return self.start + (self.end - self.start) * progress

    def set_temperature(self, model, temperature, force=False):
        """Set ``temperature`` on every module of ``model`` that declares
        ``annealed_temperature``, unless it is the value set last time
        (``force`` sets it anyway)."""
        if temperature == self._last and not force:
            return
        self._last = temperature
        if is_model_wrapper(model):
            model = model.module
        for m in model.modules():
            if anneals_temperature(m):
                m.temperature = temperature

    def before_train(self, runner):
        if self.num_steps is None:
            self.num_steps = 10 if self.by_epoch else 10 * len(runner.train_dataloader)
        elif self.num_steps < 1:
            total = runner.max_epochs if self.by_epoch else runner.max_iters
            self.num_steps = max(1, round(self.num_steps * total))
        step = runner.epoch if self.by_epoch else runner.iter
        self.set_temperature(runner.model, self.temperature_at(step), force=True)

    def before_train_epoch(self, runner):
        if self.by_epoch:
            self.set_temperature(runner.model, self.temperature_at(runner.epoch))

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if not self.by_epoch:
            self.set_temperature(runner.model, self.temperature_at(runner.iter))
