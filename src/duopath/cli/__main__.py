"""``python -m duopath.cli``: the ``duopath`` command without the installed entry point."""

from duopath.cli import app

app()
