"""Convert an official classification checkpoint of a design to mmext's layout.

    python tools/model_converters/convert_official.py TYPE SRC DST [--arch ARCH | --config CONFIG]
                                                      [--cfg KEY=VALUE ...] [--no-weights-only]

The same as ``python -m mmext convert`` (mmext/tools/convert_official.py),
which also runs from an installed mmext without a checkout; ``--help`` lists
every accepted TYPE.
"""
import os.path as osp
import sys

# run from a checkout
sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmext.tools.convert_official import main, parse_args  # noqa: E402,F401

if __name__ == '__main__':
    main()
