"""MutualNet's training step for detectors and segmentors: the sandwich rule
with in-place distillation over widths and input resolutions.

Yang et al., "MutualNet: Adaptive ConvNet via Mutual Learning from Network
Width and Resolution", ECCV 2020 (arXiv 1909.12978); official code
taoyang1122/MutualNet, ``train.py``. Per mini-batch the official step trains
the largest width at full resolution on the labels, then the smallest width
and two widths drawn uniformly from the range, each on the batch bilinearly
resized (``align_corners=True``) to a resolution drawn from the list, with
``KLDiv(log_softmax(sub), softmax(max.detach()))`` as their only loss, and
makes one optimizer step. The paper has no detection code; this module gives
the rules that carry the step to dense prediction (see
docs/designs/mutualnet.md):

- :func:`resize_batch` resizes the preprocessed batch and rescales what the
  data samples say about it (metainfo, boxes, masks, segmentation maps).
- :class:`MutualNetDistiller` records the teacher's (largest width) head
  outputs during its ordinary loss and computes each student's distillation
  loss against them.
- :class:`MutualNetStep` is the sandwich as one ``loss(inputs, data_samples)``
  call, so that a model wrapper (MMDistributedDataParallel) sees one forward per
  iteration; :class:`mmext.engine.hooks.MutualNetHook` installs it.

The width of the slimmable modules is set with ``set_width_mult`` of
:mod:`mmext.models.layers.slimmable`.
"""
import contextlib
import copy
import math
import random

import torch
import torch.nn.functional as F

from mmext.utils.errors import MMExtError


class MutualNetModelError(MMExtError, ValueError):
    """A model the MutualNet step has no rule for (a ValueError whose message
    is the one line the tools print)."""


def _slimmable():
    # Imported when used: the layers module registers the hosts' options, and
    # this module is imported by the hook package before the models are.
    from mmext.models.layers import slimmable
    return slimmable


def bernoulli_kl(student_logits, teacher_logits, temperature=1.0):
    """Element-wise KL(teacher || student) of independent Bernoulli
    distributions given by sigmoid logits (one per class: RetinaNet, RPN).

    ``p * (log p - log q) + (1 - p) * (log(1 - p) - log(1 - q))`` with
    ``p = sigmoid(t / T)``, ``q = sigmoid(s / T)``, times ``T**2`` (Hinton's
    scaling, so that the gradient keeps its size across temperatures). Exactly
    0 where ``student_logits == teacher_logits``.

    Args:
        student_logits (Tensor): Any shape.
        teacher_logits (Tensor): Same shape; not differentiated.
        temperature (float): ``T``. Defaults to 1.

    Returns:
        Tensor: Same shape, in nats.
    """
    s = student_logits / temperature
    t = teacher_logits.detach() / temperature
    p = t.sigmoid()
    kl = p * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - p) * (F.logsigmoid(-t) - F.logsigmoid(-s))
    return kl * temperature**2


def softmax_kl(student_logits, teacher_logits, dim=1, temperature=1.0):
    """KL(softmax(t / T) || softmax(s / T)) along ``dim``, times ``T**2``: the
    official ``KLDivLoss(log_softmax(sub), softmax(max))`` before its
    reduction. Exactly 0 where the two are equal.

    Args:
        student_logits (Tensor): Any shape.
        teacher_logits (Tensor): Same shape; not differentiated.
        dim (int): Class dimension. Defaults to 1.
        temperature (float): ``T``. Defaults to 1.

    Returns:
        Tensor: The input shape without ``dim``, in nats.
    """
    log_q = F.log_softmax(student_logits / temperature, dim=dim)
    log_p = F.log_softmax(teacher_logits.detach() / temperature, dim=dim)
    return (log_p.exp() * (log_p - log_q)).sum(dim) * temperature**2


def _resize_map(x, size):
    """A teacher map at the student's map size (bilinear, corners aligned as
    the input resize); unchanged when the sizes agree."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode='bilinear', align_corners=True)


# --------------------------------------------------------------------------
# Resizing a batch


def resize_batch(inputs, data_samples, scale, size_divisor=1):
    """The preprocessed batch resized by ``scale``, with data samples that
    describe the resized batch.

    The tensor is resized bilinearly with ``align_corners=True``, as the
    official ``train.py`` / ``utils/transforms.py``. The new size is
    ``round(H * scale)`` rounded to a multiple of ``size_divisor`` (the data
    preprocessor's ``pad_size_divisor``, so that the batch stays a valid input),
    hence the horizontal and vertical factors ``sx = w / W`` and ``sy = h / H``
    may differ slightly from ``scale``; everything is rescaled by them.
    In each (deep-copied) data sample: metainfo ``img_shape``, ``pad_shape``
    (rounded), ``batch_input_shape`` (the new size) and ``scale_factor``
    (multiplied: mmdet's ``(w_scale, h_scale)``); ``gt_instances`` /
    ``ignored_instances`` boxes times ``(sx, sy, sx, sy)`` and masks resized
    (nearest); ``gt_sem_seg`` resized (nearest). With ``align_corners=True``
    pixel ``x`` moves to ``x * (w - 1) / (W - 1)``, which differs from
    ``x * sx`` by less than one pixel.

    Args:
        inputs (Tensor): ``(N, C, H, W)`` batch from the data preprocessor.
        data_samples (list | None): mmdet ``DetDataSample`` or mmseg
            ``SegDataSample`` of the batch.
        scale (float): Resize factor, > 0.
        size_divisor (int): The new height and width are multiples of it.

    Returns:
        tuple: ``(inputs, data_samples, (sx, sy))``; the originals and
        ``(1.0, 1.0)`` when the size does not change.

    Raises:
        ValueError: ``scale`` not positive.
    """
    if not scale > 0:
        raise ValueError(f'resize_batch: scale={scale}; expected a positive factor')
    H, W = inputs.shape[-2:]
    d = max(int(size_divisor or 1), 1)
    h = max(d, int(round(H * scale / d)) * d)
    w = max(d, int(round(W * scale / d)) * d)
    if (h, w) == (H, W):
        return inputs, data_samples, (1.0, 1.0)
    sx, sy = w / W, h / H
    resized = F.interpolate(inputs, size=(h, w), mode='bilinear', align_corners=True)
    if data_samples is None:
        return resized, None, (sx, sy)
    return resized, [_rescale_sample(s, sx, sy, (h, w)) for s in data_samples], (sx, sy)


def _scaled_hw(shape, sx, sy):
    return (int(round(shape[0] * sy)), int(round(shape[1] * sx))) + tuple(shape[2:])


def _rescale_sample(sample, sx, sy, batch_shape):
    sample = copy.deepcopy(sample)
    meta = {}
    for key in ('img_shape', 'pad_shape'):
        if key in sample.metainfo:
            meta[key] = _scaled_hw(sample.metainfo[key], sx, sy)
    if 'batch_input_shape' in sample.metainfo:
        meta['batch_input_shape'] = tuple(batch_shape)
    if 'scale_factor' in sample.metainfo:
        w_scale, h_scale = sample.metainfo['scale_factor'][:2]
        meta['scale_factor'] = (w_scale * sx, h_scale * sy)
    sample.set_metainfo(meta)
    for key in ('gt_instances', 'ignored_instances'):
        if key in sample:
            _rescale_instances(getattr(sample, key), sx, sy)
    if 'gt_sem_seg' in sample:
        seg = sample.gt_sem_seg.data
        size = _scaled_hw(seg.shape[-2:], sx, sy)
        # A new PixelData: the old one checks every field against its size.
        sample.gt_sem_seg = type(sample.gt_sem_seg)(
            metainfo=sample.gt_sem_seg.metainfo,
            data=F.interpolate(seg[None].float(), size=size, mode='nearest')[0].to(seg.dtype))
    return sample


def _rescale_instances(instances, sx, sy):
    if 'bboxes' in instances:
        boxes = instances.bboxes
        if hasattr(boxes, 'rescale_'):  # mmdet's BaseBoxes
            boxes.rescale_([sx, sy])
        else:
            instances.bboxes = boxes * boxes.new_tensor([sx, sy, sx, sy])
    if 'masks' in instances:
        masks = instances.masks
        if isinstance(masks, torch.Tensor):
            size = _scaled_hw(masks.shape[-2:], sx, sy)
            instances.masks = F.interpolate(masks[None].float(), size=size,
                                            mode='nearest')[0].to(masks.dtype)
        else:  # mmdet's BitmapMasks / PolygonMasks
            instances.masks = masks.resize(_scaled_hw((masks.height, masks.width), sx, sy))


# --------------------------------------------------------------------------
# Distillation


class MutualNetDistiller:
    """Which head outputs the students match, and the distillation losses.

    The teacher is the largest width at full resolution; its head outputs are
    recorded (detached) during its ordinary ground-truth loss, by wrapping the
    heads' ``forward`` for that call. A student runs at width ``w`` on the batch resized by factors
    ``(sx, sy)``; its maps are smaller, so every teacher map is resized to
    the student's map size (bilinear, ``align_corners=True`` like the input
    resize) before it is compared. The loss is 0 when student and teacher
    outputs are equal, e.g. the same width at scale 1.

    Rules by model (the loss keys, before the subnet prefix):

    - **Segmentors** (mmseg ``EncoderDecoder``): the decode head's per-pixel
      logits; ``loss_kd_seg`` = softmax KL over classes (Bernoulli KL for a
      one-channel sigmoid head), mean over the student's pixels. The
      auxiliary head is not distilled (it is dropped at inference).
    - **Dense detectors** (mmdet single-stage, ``AnchorHead`` family with
      ``DeltaXYWHBBoxCoder``: RetinaNet): ``loss_kd_cls`` = per-class
      Bernoulli KL of the sigmoid logits (softmax KL over the ``C + 1``
      classes for a softmax head), summed over classes, mean over all anchor
      positions of all levels. ``loss_kd_bbox`` = L1 between the student's box
      deltas and the teacher's deltas carried to the student's scale, summed
      over the 4 deltas, mean over the matched positions: the anchors where
      the teacher's (resized) maximum foreground probability exceeds
      ``score_thr``; 0 when there are none. Anchors keep their size across
      resolutions, so the teacher's box, scaled by ``(sx, sy)`` into the
      student's image, has deltas ``(sx * dx, sy * dy, dw + log sx,
      dh + log sy)`` against the student's anchor at the same relative
      position (the coder's means / stds are undone first and redone after).
    - **Two-stage detectors** (mmdet ``TwoStageDetector`` with a
      ``StandardRoIHead``: Mask R-CNN): the RPN head as a dense detector
      (``rpn_loss_kd_cls``, ``rpn_loss_kd_bbox``), and ``loss_kd_roi_cls``:
      softmax KL of the box head's class logits on the teacher's sampled RoIs
      (the proposals its box head was trained on), scaled by ``(sx, sy)``
      into the student's image and pooled from the student's features, mean
      over RoIs. Box regression and masks of the RoI head are not distilled.

    Args:
        temperature (float): KL temperature ``T`` (losses times ``T**2``).
            Defaults to 1, the official code's (no temperature).
        score_thr (float): Teacher foreground probability above which a
            dense position takes part in the box term. Defaults to 0.5.
        loss_weight (float | dict): Weight of every distillation loss, or a
            dict by loss key (``loss_kd_cls``, ``loss_kd_bbox``,
            ``loss_kd_seg``, ``loss_kd_roi_cls``, ``rpn_loss_kd_cls``,
            ``rpn_loss_kd_bbox``; missing keys weigh 1). Defaults to 1.

    Raises:
        ValueError: the model has no rule here (one line naming the part).
    """

    def __init__(self, temperature=1.0, score_thr=0.5, loss_weight=1.0):
        if not temperature > 0:
            raise ValueError(f'MutualNet distill: temperature={temperature}; expected > 0')
        self.temperature = float(temperature)
        self.score_thr = float(score_thr)
        self.loss_weight = loss_weight
        self._records = {}

    # -- which model ------------------------------------------------------

    @staticmethod
    def kind_of(model):
        """``'segmentor'``, ``'dense'`` or ``'two_stage'``.

        Raises:
            MutualNetModelError: (a ValueError) a model or head this distiller
                has no rule for.
        """
        name = type(model).__name__
        if hasattr(model, 'decode_head') and hasattr(model, 'extract_feat'):
            if isinstance(model.decode_head, torch.nn.ModuleList):
                raise MutualNetModelError(
                    f'MutualNetHook: no distillation rule for {name} (a cascade of decode '
                    'heads); use an EncoderDecoder or remove the hook')
            return 'segmentor'
        if getattr(model, 'with_rpn', False) and hasattr(model, 'roi_head'):
            from mmdet.models.roi_heads import StandardRoIHead
            _check_dense_head(model.rpn_head, 'rpn_head')
            if not isinstance(model.roi_head, StandardRoIHead):
                raise MutualNetModelError(
                    f'MutualNetHook: no distillation rule for roi_head '
                    f'{type(model.roi_head).__name__}; use a StandardRoIHead (Mask R-CNN, '
                    'Faster R-CNN) or remove the hook')
            if getattr(model.roi_head.bbox_head, 'custom_cls_channels', False):
                raise MutualNetModelError(
                    'MutualNetHook: no distillation rule for a box head with custom class '
                    'channels; use a softmax box head')
            return 'two_stage'
        if hasattr(model, 'bbox_head') and hasattr(model, 'extract_feat'):
            _check_dense_head(model.bbox_head, 'bbox_head')
            return 'dense'
        raise MutualNetModelError(
            f'MutualNetHook: no distillation rule for {name}; supported: mmseg '
            'EncoderDecoder, mmdet anchor-based single-stage detectors (RetinaNet) and '
            'two-stage detectors with a StandardRoIHead')

    # -- teacher ----------------------------------------------------------

    @contextlib.contextmanager
    def record_teacher(self, model):
        """Context in which the teacher's head outputs are recorded
        (detached) while the model computes its ground-truth loss."""
        kind = self.kind_of(model)
        self._records = {}
        patched = []

        def keep(module, name, take):
            # The instance's forward, not a forward hook: mmseg's decode head
            # calls self.forward(...) in its loss, which bypasses hooks.
            original = module.forward
            own = module.__dict__.get('forward')

            def forward(*args, **kwargs):
                out = original(*args, **kwargs)
                if name not in self._records:  # the first call: the loss's forward
                    self._records[name] = _detach(take(args, out))
                return out

            module.forward = forward
            patched.append((module, own))

        try:
            if kind == 'segmentor':
                keep(model.decode_head, 'seg', lambda a, o: o)
            elif kind == 'dense':
                keep(model.bbox_head, 'dense', lambda a, o: (o[0], o[1]))
            else:
                roi = model.roi_head
                keep(model.rpn_head, 'rpn', lambda a, o: (o[0], o[1]))
                keep(roi.bbox_roi_extractor, 'rois', lambda a, o: a[1])
                keep(roi.bbox_head, 'roi_cls', lambda a, o: o[0])
            yield self._records
        finally:
            for module, own in patched:
                if own is None:
                    del module.forward
                else:
                    module.forward = own
        missing = {'segmentor': ['seg'], 'dense': ['dense'],
                   'two_stage': ['rpn', 'rois', 'roi_cls']}[kind]
        missing = [m for m in missing if m not in self._records]
        if missing:
            raise RuntimeError(f'MutualNet: the teacher pass ran no {missing} forward; the '
                               'model computes its loss without the heads this rule reads')

    # -- students ---------------------------------------------------------

    def student_loss(self, model, inputs, data_samples, teacher, factors):
        """Distillation losses of the model at its current width on
        ``inputs`` (the batch resized by ``factors = (sx, sy)``) against the
        ``teacher`` records of :meth:`record_teacher`.

        Returns:
            dict[str, Tensor]: scalar losses, weighted.
        """
        kind = self.kind_of(model)
        x = model.extract_feat(inputs)
        if kind == 'segmentor':
            losses = dict(loss_kd_seg=self.seg_loss(model.decode_head(x), teacher['seg']))
        elif kind == 'dense':
            losses = self.dense_loss(model.bbox_head(x), teacher['dense'], model.bbox_head,
                                     factors)
        else:
            rpn = self.dense_loss(model.rpn_head(x), teacher['rpn'], model.rpn_head, factors)
            losses = {f'rpn_{k}': v for k, v in rpn.items()}
            sx, sy = factors
            rois = teacher['rois'].clone()
            rois[:, 1:] = rois[:, 1:] * rois.new_tensor([sx, sy, sx, sy])
            cls_score = model.roi_head._bbox_forward(x, rois)['cls_score']
            losses['loss_kd_roi_cls'] = softmax_kl(
                cls_score, teacher['roi_cls'], dim=-1, temperature=self.temperature).mean()
        return {k: v * self._weight(k) for k, v in losses.items()}

    def _weight(self, key):
        if isinstance(self.loss_weight, dict):
            return float(self.loss_weight.get(key, 1.0))
        return float(self.loss_weight)

    def seg_loss(self, student, teacher):
        """``loss_kd_seg`` for ``(N, C, h, w)`` student logits and ``(N, C, H,
        W)`` teacher logits: mean over the student's pixels."""
        teacher = _resize_map(teacher, student.shape[-2:])
        if student.shape[1] == 1:
            return bernoulli_kl(student, teacher, self.temperature).mean()
        return softmax_kl(student, teacher, dim=1, temperature=self.temperature).mean()

    def dense_loss(self, student, teacher, head, factors):
        """``loss_kd_cls`` / ``loss_kd_bbox`` of an anchor head.

        Args:
            student, teacher (tuple): ``(cls_scores, bbox_preds)``, lists over
                levels of ``(N, A * C, h, w)`` / ``(N, A * 4, h, w)`` maps.
            head: the head (``num_base_priors``, ``cls_out_channels``,
                ``use_sigmoid_cls``, ``bbox_coder``).
            factors (tuple): ``(sx, sy)`` of the student's input.
        """
        num_anchors, num_cls = head.num_base_priors, head.cls_out_channels
        sigmoid = head.use_sigmoid_cls
        means, stds = _coder_means_stds(head)
        sx, sy = factors
        log_scale = torch.tensor([0.0, 0.0, math.log(sx), math.log(sy)])
        mult = torch.tensor([sx, sy, 1.0, 1.0])
        kl_sum, positions, l1_sum, matched = 0.0, 0, 0.0, 0
        for s_cls, s_reg, t_cls, t_reg in zip(student[0], student[1], teacher[0], teacher[1]):
            n, _, h, w = s_cls.shape
            t_cls = _resize_map(t_cls, (h, w)).reshape(n, num_anchors, num_cls, h, w)
            t_reg = _resize_map(t_reg, (h, w)).reshape(n, num_anchors, 4, h, w)
            s_cls = s_cls.reshape(n, num_anchors, num_cls, h, w)
            s_reg = s_reg.reshape(n, num_anchors, 4, h, w)
            if sigmoid:
                kl = bernoulli_kl(s_cls, t_cls, self.temperature).sum(2)
                fg = t_cls.sigmoid().amax(2)
            else:  # mmdet's softmax heads: background is the last class
                kl = softmax_kl(s_cls, t_cls, dim=2, temperature=self.temperature)
                fg = t_cls.softmax(2)[:, :, :-1].amax(2)
            kl_sum = kl_sum + kl.sum()
            positions += kl.numel()
            # Teacher deltas -> the student's scale (see the class docstring).
            target = t_reg
            if (sx, sy) != (1.0, 1.0):
                shape = (1, 1, 4, 1, 1)
                m, sd = means.to(t_reg).view(shape), stds.to(t_reg).view(shape)
                target = ((t_reg * sd + m) * mult.to(t_reg).view(shape)
                          + log_scale.to(t_reg).view(shape) - m) / sd
            keep = (fg > self.score_thr).unsqueeze(2).to(s_reg.dtype)
            l1_sum = l1_sum + ((s_reg - target).abs() * keep).sum()
            matched += int(keep.sum().item())
        return dict(loss_kd_cls=kl_sum / max(positions, 1),
                    loss_kd_bbox=l1_sum / max(matched, 1))


def _detach(x):
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, (list, tuple)):
        return type(x)(_detach(v) for v in x)
    return x


def _check_dense_head(head, name):
    from mmdet.models.dense_heads import AnchorHead
    from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder
    if not isinstance(head, AnchorHead) or not isinstance(head.bbox_coder, DeltaXYWHBBoxCoder):
        raise MutualNetModelError(
            f'MutualNetHook: no distillation rule for {name} {type(head).__name__}; '
            'use an anchor head with DeltaXYWHBBoxCoder (RetinaHead, RPNHead) or remove the hook')


def _coder_means_stds(head):
    coder = head.bbox_coder
    return (torch.tensor(coder.means, dtype=torch.float32),
            torch.tensor(coder.stds, dtype=torch.float32))


# --------------------------------------------------------------------------
# The sandwich


class MutualNetStep:
    """The sandwich rule with in-place distillation as one
    ``loss(inputs, data_samples)`` call (what a model's ``forward(...,
    mode='loss')`` calls), returning one loss dict for one backward.

    1. Width ``max(width_mult_range)`` on the batch as it is: the model's own
       ground-truth losses (keys unchanged); the teacher's head outputs are
       recorded, detached.
    2. Width ``min(width_mult_range)`` (key prefix ``min.``) and
       ``num_sampled_widths`` widths drawn uniformly from the range
       (``rand1.``, ``rand2.``, ...), each on the batch resized by a factor
       drawn from ``resolution_list`` (:func:`resize_batch`): distillation
       losses only (:class:`MutualNetDistiller`). Each also logs its
       ``width_mult`` and ``scale`` (keys without ``loss``: logged, not
       summed).

    The model's width is restored afterwards (the width it evaluates at).

    Args:
        model: the unwrapped detector / segmentor.
        loss (callable): its original bound ``loss`` method.
        width_mult_range (tuple[float, float]): ``(min, max)`` width.
        resolution_list (list[float]): input scale factors (1 = as loaded).
        num_sampled_widths (int): random widths per step (official: 2).
        distiller (MutualNetDistiller): the distillation rules.
        rng (random.Random): draws widths and resolutions (seeded by the
            hook from the run's seed, so every DDP rank draws the same).
        size_divisor (int): resized batches stay multiples of it.
    """

    def __init__(self, model, loss, width_mult_range, resolution_list, num_sampled_widths,
                 distiller, rng=None, size_divisor=1):
        self.model = model
        self.loss = loss
        self.min_width, self.max_width = width_mult_range
        self.resolution_list = list(resolution_list)
        self.num_sampled_widths = num_sampled_widths
        self.distiller = distiller
        self.rng = rng or random.Random(0)
        self.size_divisor = size_divisor

    def subnets(self):
        """``[(prefix, width, scale), ...]`` of this step's students."""
        widths = [('min', self.min_width)] + [
            (f'rand{i + 1}', self.rng.uniform(self.min_width, self.max_width))
            for i in range(self.num_sampled_widths)]
        return [(name, w, self.rng.choice(self.resolution_list)) for name, w in widths]

    def __call__(self, inputs, data_samples):
        sl = _slimmable()
        model = self.model
        previous = sl.set_width_mult(model, self.max_width)
        try:
            with self.distiller.record_teacher(model) as teacher:
                losses = dict(self.loss(inputs, data_samples))
            for name, width, scale in self.subnets():
                sl.set_width_mult(model, width)
                s_inputs, s_samples, factors = resize_batch(inputs, data_samples, scale,
                                                            self.size_divisor)
                kd = self.distiller.student_loss(model, s_inputs, s_samples, teacher, factors)
                losses.update({f'{name}.{k}': v for k, v in kd.items()})
                losses[f'{name}.width_mult'] = inputs.new_tensor(width)
                losses[f'{name}.scale'] = inputs.new_tensor(scale)
        finally:
            sl.set_width_mult(model, previous)
        return losses
