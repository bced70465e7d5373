"""The cohort report: figures (``plots``), tile heatmaps over slide thumbnails (``heatmaps``), the
self-contained HTML page (``html``); the ``duopath evaluate`` / ``heatmaps`` / ``report`` commands
live in ``duopath.cli.report``.

Nothing is imported here on purpose: ``duopath --help`` imports ``duopath.cli.report`` to register
the commands, and must not pay for matplotlib, scikit-survival or lifelines.
"""
