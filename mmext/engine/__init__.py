from .hooks import (DropBlockScheduleHook, DynamicConvTemperatureHook, PeakMemoryHook,
                    TrainingCurveHook)

__all__ = ['DropBlockScheduleHook', 'DynamicConvTemperatureHook', 'PeakMemoryHook',
           'TrainingCurveHook']
