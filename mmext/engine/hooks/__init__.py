from .training_curve_hook import TrainingCurveHook

__all__ = ['TrainingCurveHook']
