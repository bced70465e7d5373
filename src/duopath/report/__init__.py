"""The cohort report: figures (``plots``), tile heatmaps over slide thumbnails (``heatmaps``), the
self-contained HTML page (``html``) and the ``duopath evaluate`` / ``duopath report`` commands
(``cli``).

Nothing is imported here on purpose: ``duopath --help`` imports ``duopath.report.cli`` to register
the commands, and must not pay for matplotlib, scikit-survival or lifelines.
"""
