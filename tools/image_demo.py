"""Draw the predictions of a trained detector or segmentor on one's own images.

    python tools/image_demo.py IMAGE [IMAGE ...] CONFIG CHECKPOINT [--out-dir DIR]
                               [--score-thr T] [--device DEV] [--embedded {demo,smoke}]

The same as ``python -m mmext infer`` (mmext/tools/image_demo.py), over mmdet's
``DetInferencer`` and mmseg's ``MMSegInferencer``.
"""
from mmext.tools.image_demo import main

if __name__ == '__main__':
    main()
