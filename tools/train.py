"""Train an mmdet or mmseg config (the library is picked from default_scope).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
                          [--embedded {demo,smoke}] [--cfg-options k=v ...]
                          [--launcher {none,pytorch,slurm,mpi}] [--peak-memory]

The same as ``python -m mmext train`` (mmext/tools/train.py), which also runs
from an installed mmext without a checkout.
"""
from mmext.tools.train import main

if __name__ == '__main__':
    main()
