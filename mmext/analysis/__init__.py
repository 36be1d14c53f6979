"""Analysis: FLOP counting, parameter / FLOP reports of configs, the speed
benchmark, the leaderboard and the generated docs (model zoo, cost tables)."""
from .backbone_costs import (BackboneCost, backbone_cost, check_docs, marker_configs,
                             render_table, update_docs, update_markdown)
from .flops import OP_HANDLES, FlopCount, count_flops
from .model_complexity import Complexity, model_complexity

__all__ = ['BackboneCost', 'backbone_cost', 'render_table', 'marker_configs', 'update_markdown',
           'update_docs', 'check_docs', 'OP_HANDLES', 'FlopCount', 'count_flops', 'Complexity',
           'model_complexity']
