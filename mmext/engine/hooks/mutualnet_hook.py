import logging
import random

import torch
from mmengine.dist import all_reduce_params, get_rank
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch.utils.data import DataLoader

from mmext.models.mutualnet import (MutualNetDistiller, MutualNetModelError, MutualNetStep,
                                    _slimmable)
from mmext.registry import HOOKS


@HOOKS.register_module()
class MutualNetHook(Hook):
    """MutualNet training (width x resolution mutual learning) for mmdet /
    mmseg models with a slimmable backbone, as a config switch::

        custom_hooks = [dict(type='mmext.MutualNetHook', width_mult_range=(0.7, 1.0),
                             resolution_list=[1.0, 0.857, 0.714, 0.571])]

    Yang et al., ECCV 2020 (arXiv 1909.12978); official code
    taoyang1122/MutualNet ``train.py`` (sandwich rule, in-place distillation)
    and ``ComputePostBN.py`` (BN calibration).

    - ``before_train``: replaces the (unwrapped) model's ``loss(inputs,
      data_samples)`` by :class:`~mmext.models.mutualnet.MutualNetStep`, so
      that the one forward a training iteration makes (through
      ``MMDistributedDataParallel`` too) runs the whole sandwich: the
      largest width on the batch with the ground-truth losses, then the
      smallest width and ``num_sampled_widths`` random widths, each at a
      resolution drawn from ``resolution_list``, distilling from the
      largest width's detached head outputs
      (:class:`~mmext.models.mutualnet.MutualNetDistiller` documents what is
      matched). The summed loss dict gets one backward and one optimizer
      step, mmengine's usual update. The draws come from a
      ``random.Random`` seeded with the run's seed, so DDP ranks agree.
    - ``before_val_epoch`` / ``before_test_epoch``: BN calibration at the
      width the model evaluates at (the backbone's ``slimmable.width_mult``):
      ``calibrate_bn`` of :mod:`mmext.models.layers.slimmable` over
      ``calibration_batches`` training batches at the configured input
      size; under DDP the recomputed running statistics are then averaged
      over the ranks. Without a training dataloader (a test config without
      one) calibration is skipped with a warning.

    A hook, not a loop: ``mmext.utils.embedded.to_embedded`` rewrites
    ``train_cfg`` (a loop type would be lost on the embedded data), and DDP
    must see one forward per iteration.

    Args:
        width_mult_range (tuple[float, float]): ``(min, max)`` width
            multiplier; ``max`` is the teacher. Catalog defaults: ResNet-50
            ``(0.9, 1.0)``, MobileNetV2 ``(0.7, 1.0)``.
        resolution_list (list[float]): input scale factors the students draw
            from, relative to the batch as loaded (the official
            ``[224, 192, 160, 128] / 224`` is about ``[1.0, 0.857, 0.714,
            0.571]``, the default).
        num_sampled_widths (int): random widths per iteration besides the
            smallest. Defaults to 2 (official).
        distill (dict, optional): keyword arguments of
            :class:`~mmext.models.mutualnet.MutualNetDistiller`
            (``temperature``, ``score_thr``, ``loss_weight``).
        calibration_batches (int): training batches for BN calibration
            before evaluation; 0 turns calibration off. Defaults to 8
            (``ComputePostBN.py``).

    Raises:
        ValueError: bad range / list / counts (at construction); at
            ``before_train``, a backbone without the ``slimmable`` option or
            a model / head without a distillation rule (one line each).
    """

    priority = 'NORMAL'

    def __init__(self,
                 width_mult_range=(0.7, 1.0),
                 resolution_list=(1.0, 0.857, 0.714, 0.571),
                 num_sampled_widths=2,
                 distill=None,
                 calibration_batches=8):
        lo, hi = (float(v) for v in width_mult_range)
        if not 0 < lo <= hi <= 1:
            raise ValueError(f'MutualNetHook: width_mult_range={tuple(width_mult_range)}; '
                             'expected (min, max) with 0 < min <= max <= 1')
        if not resolution_list or any(not float(r) > 0 for r in resolution_list):
            raise ValueError(f'MutualNetHook: resolution_list={list(resolution_list)}; '
                             'expected a non-empty list of positive scale factors')
        if num_sampled_widths < 0 or calibration_batches < 0:
            raise ValueError('MutualNetHook: num_sampled_widths and calibration_batches must '
                             'be >= 0')
        self.width_mult_range = (lo, hi)
        self.resolution_list = [float(r) for r in resolution_list]
        self.num_sampled_widths = int(num_sampled_widths)
        self.distiller = MutualNetDistiller(**(distill or {}))
        self.calibration_batches = int(calibration_batches)
        self.step = None

    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def check_model(self, model):
        """The model's backbone is slimmable and the distiller has a rule
        for its heads.

        Raises:
            ValueError: one line naming what to change.
        """
        backbone = getattr(model, 'backbone', None)
        try:
            widths = _slimmable().width_mult_list_of(backbone)
        except (ValueError, AttributeError):
            widths = None
        if not widths:
            raise MutualNetModelError(
                f'MutualNetHook: the backbone {type(backbone).__name__} has no slimmable option '
                'set; set model.backbone.slimmable=dict(width_mult_list=[...]) on a slimmable '
                'host (mmext.ResNet family, MobileNetV2) or remove the hook')
        self.distiller.kind_of(model)

    def before_train(self, runner):
        model = self._model(runner)
        self.check_model(model)
        if isinstance(model.__dict__.get('loss'), MutualNetStep):  # a second train()
            return
        preprocessor = getattr(model, 'data_preprocessor', None)
        self.step = MutualNetStep(
            model, model.loss, self.width_mult_range, self.resolution_list,
            self.num_sampled_widths, self.distiller, rng=random.Random(runner.seed),
            size_divisor=getattr(preprocessor, 'pad_size_divisor', None)
            or getattr(preprocessor, 'size_divisor', None) or 1)
        # An instance attribute: forward(mode='loss') calls self.loss(...).
        model.loss = self.step
        lo, hi = self.width_mult_range
        print_log(f'MutualNetHook: widths [{lo}, {hi}] (max + min + {self.num_sampled_widths} '
                  f'random), resolutions {self.resolution_list}', logger='current')

    def after_train(self, runner):
        model = self._model(runner)
        if isinstance(model.__dict__.get('loss'), MutualNetStep):
            del model.loss

    def before_val_epoch(self, runner):
        self.calibrate(runner)

    def before_test_epoch(self, runner):
        self.calibrate(runner)

    def calibrate(self, runner):
        """BN calibration at the model's current width on training batches."""
        if not self.calibration_batches:
            return
        try:
            dataset = runner.train_dataloader.dataset
            loader = runner.train_dataloader
        except Exception as e:  # noqa: BLE001 - test configs may have none
            print_log(f'MutualNetHook: no training dataloader ({type(e).__name__}: {e}); BN '
                      'statistics are not calibrated', logger='current', level=logging.WARNING)
            return
        # A loader of its own: iterating the training loader's sampler here
        # would share its state with the suspended training iterator (mmdet's
        # AspectRatioBatchSampler keeps its buckets on the sampler).
        generator = torch.Generator().manual_seed(runner.seed + get_rank())
        batch_size = loader.batch_size or getattr(loader.batch_sampler, 'batch_size', 1)
        batches = DataLoader(dataset, batch_size=batch_size, shuffle=True,
                             generator=generator, collate_fn=loader.collate_fn,
                             num_workers=loader.num_workers)
        model = self._model(runner)
        sl = _slimmable()
        # set_width_mult returns the width it replaces: the evaluated one.
        width = sl.set_width_mult(model, self.width_mult_range[1])
        sl.set_width_mult(model, width)
        lo, hi = self.width_mult_range
        if not lo <= width <= hi:
            # Allowed (the layers slice any width), but nothing trained it.
            print_log(f'MutualNetHook: evaluating at width {width:g}, outside the trained '
                      f'width_mult_range ({lo:g}, {hi:g}); the sub-network was never trained',
                      logger='current', level=logging.WARNING)
        used = sl.calibrate_bn(model, batches, width, num_batches=self.calibration_batches)
        # Each rank saw its own batches: average their statistics.
        stats = [b for name, b in model.named_buffers()
                 if 'running_' in name and b.is_floating_point()]
        if stats:
            all_reduce_params(stats, op='mean')
        print_log(f'MutualNetHook: BN statistics recomputed at width {width:g} on {used} '
                  'training batch(es)', logger='current')
