"""Analysis helpers: parameter / FLOP counts of configs and the docs tables built from them."""
from .backbone_costs import (BackboneCost, backbone_cost, check_docs, marker_configs,
                             render_table, update_docs, update_markdown)

__all__ = ['BackboneCost', 'backbone_cost', 'render_table', 'marker_configs', 'update_markdown',
           'update_docs', 'check_docs']
