"""Losses for the mmdet / mmseg heads (label smoothing)."""
from .label_smoothing import LabelSmoothingCrossEntropyLoss, LabelSmoothingFocalLoss

__all__ = ['LabelSmoothingCrossEntropyLoss', 'LabelSmoothingFocalLoss']
