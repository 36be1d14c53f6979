"""The command-line entry points, importable so that ``python -m mmext
train|test|infer|convert``, ``tools/*.py`` of a checkout and
``mmext/.mim/tools/*.py`` of an installed package all run the same code."""
