"""Convert an official classification checkpoint of a design to mmext's layout.

    python tools/model_converters/convert_official.py TYPE SRC DST [--arch ARCH | --config CONFIG]
                                                      [--cfg KEY=VALUE ...] [--no-weights-only]

The same as ``python -m mmext convert`` (mmext/tools/convert_official.py),
which also runs from an installed mmext without a checkout; ``--help`` lists
every accepted TYPE.
"""
from mmext.tools.convert_official import main, parse_args  # noqa: F401

if __name__ == '__main__':
    main()
