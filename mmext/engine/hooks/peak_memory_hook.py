"""Peak memory of the training steps of a run, measured, written next to the
run for the leaderboard's resource view."""
import json
import os.path as osp
import re
import sys
import threading

from mmengine.dist import master_only
from mmengine.hooks import Hook
from mmengine.logging import print_log

from mmext.registry import HOOKS
from mmext.utils.errors import MMExtError

METHODS = ('auto', 'hwm', 'sample')
MIB = 2**20
_STATUS = '/proc/self/status'
_CLEAR_REFS = '/proc/self/clear_refs'


def _status_kib(key):
    """A ``kB`` field (``VmRSS``, ``VmHWM``) of ``/proc/self/status``, in KiB."""
    with open(_STATUS) as f:
        m = re.search(rf'^{key}:\s+(\d+) kB', f.read(), re.M)
    if m is None:
        raise OSError(f'no {key} in {_STATUS}')
    return int(m.group(1))


def rss_bytes():
    """Resident set size of this process now, in bytes (Linux ``/proc``).

    Raises:
        OSError: Without ``/proc/self/status`` (not Linux).
    """
    return _status_kib('VmRSS') * 1024


def reset_high_water_mark():
    """Reset the kernel's resident-memory high-water mark of this process
    (``VmHWM``) to its current RSS: writing 5 to ``/proc/self/clear_refs``
    (Linux 4.0+, ``man 5 proc``).

    Raises:
        OSError: Where that file is missing or not writable.
    """
    with open(_CLEAR_REFS, 'w') as f:
        f.write('5')


def high_water_mark_bytes():
    """Peak RSS since the last :func:`reset_high_water_mark` (``VmHWM``), bytes."""
    return _status_kib('VmHWM') * 1024


def hwm_available():
    """True where the high-water mark can be reset and read (Linux)."""
    try:
        reset_high_water_mark()
        high_water_mark_bytes()
    except OSError:
        return False
    return True


class _Sampler(threading.Thread):
    """Reads the RSS every ``interval`` seconds while :attr:`active` is set;
    keeps the largest value seen (``peak``)."""

    def __init__(self, interval):
        super().__init__(name='PeakMemoryHook-sampler', daemon=True)
        self.interval = interval
        self.active = threading.Event()
        self.stopped = threading.Event()
        self.peak = 0

    def run(self):
        while not self.stopped.is_set():
            self.active.wait(0.1)
            if self.active.is_set():
                self.peak = max(self.peak, rss_bytes())
                self.stopped.wait(self.interval)

    def stop(self):
        self.stopped.set()
        self.active.set()
        self.join(timeout=5)


@HOOKS.register_module()
class PeakMemoryHook(Hook):
    """Measure the peak memory of the training iterations and write it to
    ``<work_dir>/peak_memory.json`` at the end of training.

    The window is each training iteration from the hooks' ``before_train_iter``
    to ``after_train_iter`` (this hook runs last at both): the model's
    ``train_step`` with the data preprocessor, forward, losses, backward and
    the optimizer step (its state is created in the first step, so it is
    inside), in this process. Loading the batch (``next`` on the dataloader,
    before ``before_train_iter``) and validation are outside it; with
    ``num_workers > 0`` the workers are other processes and not counted.

    CPU memory is the process's resident set size (RSS): everything resident,
    so memory that PyTorch's CPU allocator or glibc keep after a free (not
    returned to the system) is counted, as the machine has to hold it. Two
    ways to read its peak:

    * ``'hwm'``: the kernel's high-water mark, reset to the current RSS
      before every iteration (``/proc/self/clear_refs``) and read after it
      (``VmHWM``): the exact peak of the iteration (Linux 4.0+).
    * ``'sample'``: a background thread reads ``VmRSS`` every ``interval``
      seconds during the iterations: a lower bound (a spike shorter than the
      interval can fall between two reads); for Linux systems where
      ``clear_refs`` is not writable.

    ``'auto'`` takes ``'hwm'`` where it works, else ``'sample'``. Where
    ``/proc`` is missing (not Linux) the CPU figures are not measured and the
    file says so; nothing is estimated. On CUDA the file also has
    ``torch.cuda.max_memory_allocated`` (live tensors) and
    ``max_memory_reserved`` (plus the caching allocator's reserve) over the
    same windows.

    Written figures (MiB, 2^20 bytes): ``baseline_mib``, the RSS when the
    first measured iteration starts (model, its gradients' absence, the
    loaded batch, the libraries); ``peak_mib``, the largest RSS in any
    window; ``increase_mib = peak_mib - baseline_mib``, what the training
    step needs on top of the loaded model (activations, gradients,
    optimizer state, allocator reserve); ``peak_iter`` (1-based), ``iters``
    measured, ``method``, ``device``.

    Args:
        method (str): ``'auto'``, ``'hwm'`` or ``'sample'``.
        interval (float): Sampling period in seconds (``'sample'`` only).
        filename (str): Written into ``runner.work_dir``.

    Raises:
        MMExtError: An unknown ``method``, or ``'hwm'`` where the kernel's
            high-water mark cannot be reset.
    """

    priority = 'LOWEST'

    def __init__(self, method='auto', interval=0.002, filename='peak_memory.json'):
        if method not in METHODS:
            raise MMExtError(f'PeakMemoryHook: method={method!r}; choose one of {METHODS}')
        if method == 'hwm' and not hwm_available():
            raise MMExtError("PeakMemoryHook: method='hwm' needs a writable "
                             "/proc/self/clear_refs (Linux 4.0+); use method='sample'")
        if method == 'auto':
            method = 'hwm' if hwm_available() else 'sample'
        self.method = method
        self.interval = interval
        self.filename = filename
        self.cpu = osp.isfile(_STATUS)
        self._sampler = None
        self._cuda = False
        self.baseline = None
        self.peak = 0
        self.peak_iter = None
        self.iters = 0
        self.cuda_allocated = 0
        self.cuda_reserved = 0

    def before_train(self, runner):
        import torch
        self._cuda = torch.cuda.is_available() and any(
            p.is_cuda for p in runner.model.parameters())
        if self.cpu and self.method == 'sample':
            self._sampler = _Sampler(self.interval)
            self._sampler.start()

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if self.cpu:
            if self.baseline is None:
                self.baseline = rss_bytes()
            if self.method == 'hwm':
                reset_high_water_mark()
            else:
                self._sampler.peak = rss_bytes()
                self._sampler.active.set()
        if self._cuda:
            import torch
            torch.cuda.reset_peak_memory_stats()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.iters += 1
        if self.cpu:
            if self.method == 'hwm':
                peak = high_water_mark_bytes()
            else:
                self._sampler.active.clear()
                peak = max(self._sampler.peak, rss_bytes())
            if peak > self.peak:
                self.peak, self.peak_iter = peak, runner.iter + 1
        if self._cuda:
            import torch
            self.cuda_allocated = max(self.cuda_allocated, torch.cuda.max_memory_allocated())
            self.cuda_reserved = max(self.cuda_reserved, torch.cuda.max_memory_reserved())

    def after_train(self, runner):
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None
        self.save(runner)

    def result(self):
        """The figures of the iterations measured so far (see the class)."""
        out = dict(method=self.method, iters=self.iters, device='cuda' if self._cuda else 'cpu',
                   platform=sys.platform)
        if self.cpu and self.baseline is not None:
            out.update(baseline_mib=round(self.baseline / MIB, 1),
                       peak_mib=round(self.peak / MIB, 1),
                       increase_mib=round((self.peak - self.baseline) / MIB, 1),
                       peak_iter=self.peak_iter)
        elif not self.cpu:
            out['cpu'] = 'not measured: no /proc/self/status (RSS is read on Linux only)'
        if self._cuda:
            out.update(cuda_max_allocated_mib=round(self.cuda_allocated / MIB, 1),
                       cuda_max_reserved_mib=round(self.cuda_reserved / MIB, 1))
        return out

    @master_only
    def save(self, runner):
        out = self.result()
        with open(osp.join(runner.work_dir, self.filename), 'w') as f:
            json.dump(out, f, indent=2)
        if 'peak_mib' in out:
            print_log(f"peak training memory (RSS, {out['method']}): {out['peak_mib']} MiB, "
                      f"{out['increase_mib']:+} MiB over the {out['baseline_mib']} MiB before "
                      f"the first iteration ({out['iters']} iterations)", logger='current')
