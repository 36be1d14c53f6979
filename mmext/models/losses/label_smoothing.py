"""Label smoothing for the classification losses of the mmdet / mmseg heads.

Szegedy et al., "Rethinking the Inception Architecture for Computer Vision",
CVPR 2016 (arXiv 1512.00567), section 7: train on ``(1 - eps) * onehot(y) +
eps * u`` instead of ``onehot(y)``, ``u`` uniform over the ``K`` classes
(``eps = 0.1`` there). mmdet 3.3.0 and mmseg 1.2.2 have no label smoothing in
their ``CrossEntropyLoss`` or ``FocalLoss``; the two classes below are theirs
with the target smoothed:

* :class:`LabelSmoothingCrossEntropyLoss`: softmax cross-entropy (UperNet's
  decode and auxiliary heads, the Mask R-CNN box classifier), the
  ``label_smoothing`` of ``torch.nn.functional.cross_entropy`` inside mmdet's
  ``CrossEntropyLoss``;
* :class:`LabelSmoothingFocalLoss`: RetinaNet's sigmoid focal loss on the
  smoothed one-vs-all targets ``y * (1 - eps) + eps / K`` (timm's
  ``BinaryCrossEntropy(smoothing=eps)`` rule for index targets).
"""
from functools import partial

import torch.nn.functional as F
from mmdet.models.losses import CrossEntropyLoss, FocalLoss
from mmdet.models.losses.utils import weight_reduce_loss

from mmext.registry import MODELS


def _check_eps(name, eps):
    if not 0 <= eps < 1:
        raise ValueError(f'{name}: label_smoothing={eps}; expected a value in [0, 1)')


def label_smoothing_cross_entropy(pred, label, weight=None, reduction='mean', avg_factor=None,
                                  class_weight=None, ignore_index=-100, avg_non_ignore=False,
                                  label_smoothing=0.0):
    """mmdet's ``cross_entropy`` (same arguments, weighting and reduction)
    against the smoothed target ``(1 - eps) * onehot(label) + eps / K``.

    Per element: ``(1 - eps) * (-log p_label) + eps / K * sum_c (-log p_c)``
    (each term weighted by ``class_weight`` of its class when given), 0 where
    ``label == ignore_index``: torch's ``F.cross_entropy(label_smoothing=)``.

    Args:
        pred (Tensor): Logits ``(N, K)`` or ``(N, K, H, W)``.
        label (Tensor): Class indices ``(N,)`` or ``(N, H, W)``.
        label_smoothing (float): ``eps`` in ``[0, 1)``; 0 is mmdet's
            ``cross_entropy``.
        Others: as mmdet's ``cross_entropy``.

    Returns:
        Tensor: The loss, reduced as ``reduction`` says.
    """
    ignore_index = -100 if ignore_index is None else ignore_index
    loss = F.cross_entropy(pred, label, weight=class_weight, reduction='none',
                           ignore_index=ignore_index, label_smoothing=label_smoothing)
    if avg_factor is None and avg_non_ignore and reduction == 'mean':
        avg_factor = label.numel() - (label == ignore_index).sum().item()
    if weight is not None:
        weight = weight.float()
    return weight_reduce_loss(loss, weight=weight, reduction=reduction, avg_factor=avg_factor)


@MODELS.register_module()
class LabelSmoothingCrossEntropyLoss(CrossEntropyLoss):
    """mmdet's softmax ``CrossEntropyLoss`` with label smoothing, for mmdet
    and mmseg heads.

    Same arguments, call and reduction as mmdet's ``CrossEntropyLoss``
    (softmax; ``use_sigmoid`` / ``use_mask`` are refused), plus
    ``label_smoothing`` and mmseg's ``loss_name``. In an mmseg decode head
    (``loss_decode=dict(type='mmext.LabelSmoothingCrossEntropyLoss',
    label_smoothing=0.1)``) the head's ``ignore_index`` (255) reaches the
    loss, and ignored pixels add 0, as in mmseg's loss; without
    ``class_weight`` and ``avg_non_ignore`` the mean is over all pixels,
    ignored ones included, as mmseg's. (With ``class_weight`` and the mean,
    mmseg divides by the summed label weights, mmdet and this class by the
    element count.)

    Args:
        label_smoothing (float): ``eps`` in ``[0, 1)``: the target is
            ``(1 - eps) * onehot(label) + eps / K`` over the ``K`` logits of
            the prediction (for a box head: the classes and background).
            Defaults to 0.1 (Szegedy et al.). At 0 the loss is mmdet's
            ``CrossEntropyLoss``.
        loss_name (str): Name of the loss item in an mmseg head's losses
            (mmseg's ``loss_name``). Defaults to ``'loss_ce'``.
        **kwargs: mmdet ``CrossEntropyLoss``'s (``reduction``,
            ``class_weight``, ``ignore_index``, ``loss_weight``,
            ``avg_non_ignore``).

    Shapes:
        ``cls_score`` ``(N, K)`` or ``(N, K, H, W)`` logits, ``label``
        ``(N,)`` or ``(N, H, W)`` indices; a scalar at ``reduction='mean'``
        / ``'sum'``, the per-element loss at ``'none'``.

    Raises:
        ValueError: ``label_smoothing`` outside ``[0, 1)``, or ``use_sigmoid``
            / ``use_mask`` (a sigmoid classifier: :class:`LabelSmoothingFocalLoss`).

    Source: Szegedy et al., CVPR 2016; mmdet 3.3.0
    ``mmdet/models/losses/cross_entropy_loss.py``.
    """

    def __init__(self, label_smoothing=0.1, use_sigmoid=False, use_mask=False,
                 loss_name='loss_ce', **kwargs):
        _check_eps(type(self).__name__, label_smoothing)
        if use_sigmoid or use_mask:
            raise ValueError(f'{type(self).__name__} smooths a softmax over classes; '
                             'use_sigmoid / use_mask are not supported (for a sigmoid '
                             'classifier use mmext.LabelSmoothingFocalLoss)')
        super().__init__(**kwargs)
        self.label_smoothing = label_smoothing
        self._loss_name = loss_name
        # mmdet's forward calls self.cls_criterion with cross_entropy's
        # arguments (its __init__ set it to mmdet's cross_entropy).
        self.cls_criterion = partial(label_smoothing_cross_entropy,
                                     label_smoothing=label_smoothing)

    @property
    def loss_name(self):
        """The loss item's name in an mmseg head's losses."""
        return self._loss_name

    def extra_repr(self):
        return f'label_smoothing={self.label_smoothing}, {super().extra_repr()}'


@MODELS.register_module()
class LabelSmoothingFocalLoss(FocalLoss):
    """mmdet's sigmoid ``FocalLoss`` on label-smoothed one-vs-all targets
    (RetinaNet's classification loss).

    A sigmoid classifier has ``K`` binary targets per anchor: 1 for the
    anchor's class, 0 for the others (all 0 for a background anchor, label
    ``K``). Each becomes ``y * (1 - eps) + eps / K``, the softmax rule's
    uniform share ``eps / K`` spread over the ``K`` one-vs-all outputs, as
    timm's ``BinaryCrossEntropy(smoothing=eps)`` does for index targets;
    background anchors get ``eps / K`` on every class. (The other common
    rule, ``y * (1 - eps) + eps / 2`` per binary output, would raise every
    negative of ~10^5 anchors x 80 classes to 0.05 and swamp the
    positives.) The soft targets go to mmdet's ``py_sigmoid_focal_loss``,
    whose modulating and ``alpha`` factors are linear in the target; mmdet's
    ``FocalLoss`` takes that path whenever the target is one-hot, on GPU
    too (so no compiled kernel is used).

    Args:
        label_smoothing (float): ``eps`` in ``[0, 1)``. Defaults to 0.1. At
            0 the targets are mmdet's one-hot ones and the loss is mmdet's
            ``FocalLoss`` (its PyTorch formula).
        **kwargs: mmdet ``FocalLoss``'s (``use_sigmoid=True``, ``gamma``,
            ``alpha``, ``reduction``, ``loss_weight``; ``activated`` must
            stay False).

    Shapes:
        ``pred`` ``(N, K)`` logits, ``target`` ``(N,)`` indices in ``[0,
        K]`` (``K`` = background) or ``(N, K)`` binary targets (smoothed
        the same way).

    Raises:
        ValueError: ``label_smoothing`` outside ``[0, 1)``, or
            ``use_sigmoid=False`` / ``activated=True`` (not supported by
            the soft-target path).

    Source: Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017;
    mmdet 3.3.0 ``mmdet/models/losses/focal_loss.py``; timm
    ``timm/loss/binary_cross_entropy.py`` (smoothing rule).
    """

    def __init__(self, label_smoothing=0.1, use_sigmoid=True, activated=False, **kwargs):
        name = type(self).__name__
        _check_eps(name, label_smoothing)
        if not use_sigmoid or activated:
            raise ValueError(f'{name} smooths the targets of a sigmoid classifier on logits: '
                             'set use_sigmoid=True and activated=False')
        super().__init__(use_sigmoid=use_sigmoid, activated=activated, **kwargs)
        self.label_smoothing = label_smoothing

    def smooth_targets(self, pred, target):
        """``(N, K)`` targets ``y * (1 - eps) + eps / K`` from ``(N,)``
        indices (``K`` = background) or ``(N, K)`` binary targets."""
        num_classes = pred.size(1)
        if target.dim() == 1:
            target = F.one_hot(target, num_classes=num_classes + 1)[:, :num_classes]
        target = target.type_as(pred)
        eps = self.label_smoothing
        return target * (1 - eps) + eps / num_classes

    def forward(self, pred, target, weight=None, avg_factor=None, reduction_override=None):
        """mmdet ``FocalLoss.forward`` on :meth:`smooth_targets`."""
        return super().forward(pred, self.smooth_targets(pred, target), weight=weight,
                               avg_factor=avg_factor, reduction_override=reduction_override)

    def extra_repr(self):
        return f'label_smoothing={self.label_smoothing}'
