import json
import numbers
import os.path as osp

from mmengine.dist import master_only
from mmengine.hooks import Hook

from mmext.registry import HOOKS


@HOOKS.register_module()
class TrainingCurveHook(Hook):
    """Save the training losses and the validation metrics as a picture.

    Writes ``curves.png`` (and the numbers behind it, ``curves.json``) into the
    run's log folder after every validation and at the end of training, so a
    run shows whether it learned without a TensorBoard server.

    Args:
        interval (int): record the losses every this many iterations.
        metric_keys (Sequence[str], optional): the validation metrics to plot;
            defaults to every scalar metric whose name ends in a task's main
            metric (``bbox_mAP``, ``segm_mAP``, ``mIoU``...).
        filename (str): name of the picture.
    """

    priority = 'LOW'
    DEFAULT_METRICS = ('bbox_mAP', 'bbox_mAP_50', 'segm_mAP', 'segm_mAP_50', 'mIoU', 'mAcc')

    def __init__(self, interval=10, metric_keys=None, filename='curves.png'):
        self.interval = interval
        self.metric_keys = metric_keys
        self.filename = filename
        self.losses = {}
        self.metrics = {}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if not outputs or not self.every_n_train_iters(runner, self.interval):
            return
        it = runner.iter + 1
        for key, value in outputs.items():
            if 'loss' in key:
                value = value.detach().item() if hasattr(value, 'detach') else float(value)
                self.losses.setdefault(key, []).append((it, value))

    def after_val_epoch(self, runner, metrics=None):
        if not metrics:
            return
        for key, value in metrics.items():
            short = key.split('/')[-1]
            wanted = self.metric_keys or self.DEFAULT_METRICS
            # numpy scalars (mmseg's metrics) register as numbers.Real
            if short in wanted and isinstance(value, numbers.Real):
                self.metrics.setdefault(short, []).append((runner.iter, float(value)))
        self.save(runner)

    def after_train(self, runner):
        self.save(runner)

    @master_only
    def save(self, runner):
        if not self.losses and not self.metrics:
            return
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for key, points in sorted(self.losses.items()):
            axes[0].plot(*zip(*points), label=key, linewidth=1)
        axes[0].set(title='training losses', xlabel='iteration', yscale='log')
        for key, points in sorted(self.metrics.items()):
            axes[1].plot(*zip(*points), marker='o', label=key)
        axes[1].set(title='validation', xlabel='iteration', ylim=(0, None))
        for ax in axes:
            if ax.lines:
                ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        fig.suptitle(osp.basename(runner.work_dir))
        fig.tight_layout()
        out_dir = runner.log_dir
        fig.savefig(osp.join(out_dir, self.filename), dpi=100)
        plt.close(fig)
        with open(osp.join(out_dir, osp.splitext(self.filename)[0] + '.json'), 'w') as f:
            json.dump(dict(losses=self.losses, metrics=self.metrics), f)
