from .dropblock_schedule_hook import DropBlockScheduleHook
from .dynamic_conv_temperature_hook import DynamicConvTemperatureHook
from .mutualnet_hook import MutualNetHook
from .peak_memory_hook import PeakMemoryHook
from .training_curve_hook import TrainingCurveHook

__all__ = ['DropBlockScheduleHook', 'DynamicConvTemperatureHook', 'MutualNetHook',
           'PeakMemoryHook', 'TrainingCurveHook']
