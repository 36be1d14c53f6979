"""Analysis: FLOP counting (``flops``), parameter / FLOP reports of configs
(``model_complexity``, ``backbone_costs``), the speed benchmark, the
leaderboard of training runs, attention maps and dataset browsing; the
``tools/analysis_tools/`` scripts are their command lines. The docs generators
(model zoo, cost tables) are repository maintenance and live in
``.dev_scripts/``. Submodules are imported by name: each pulls in only what
it needs."""
