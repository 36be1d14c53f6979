from .hooks import (DropBlockScheduleHook, DynamicConvTemperatureHook, MutualNetHook,
                    PeakMemoryHook, TrainingCurveHook)

__all__ = ['DropBlockScheduleHook', 'DynamicConvTemperatureHook', 'MutualNetHook',
           'PeakMemoryHook', 'TrainingCurveHook']
