from .embedded import ADE_CLASSES, ADE_INDEX, CLASSES, STUFF_CLASSES, generate

__all__ = ['ADE_CLASSES', 'ADE_INDEX', 'CLASSES', 'STUFF_CLASSES', 'generate']
