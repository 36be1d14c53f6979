"""Evaluate a checkpoint with an mmdet or mmseg config (box/mask mAP, mIoU).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--embedded {demo,smoke}]
                         [--out FILE] [--show-dir DIR] [--show] [--wait-time S] [--tta]
                         [--allow-partial] [--cfg-options k=v ...]

The same as ``python -m mmext test`` (mmext/tools/test.py), which also runs
from an installed mmext without a checkout.
"""
from mmext.tools.test import main

if __name__ == '__main__':
    main()
