from .hooks import DynamicConvTemperatureHook, TrainingCurveHook

__all__ = ['DynamicConvTemperatureHook', 'TrainingCurveHook']
