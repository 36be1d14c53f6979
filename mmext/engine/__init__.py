from .hooks import DropBlockScheduleHook, DynamicConvTemperatureHook, TrainingCurveHook

__all__ = ['DropBlockScheduleHook', 'DynamicConvTemperatureHook', 'TrainingCurveHook']
