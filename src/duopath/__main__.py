"""``python -m duopath``: how the workflow's rules run a stage.

Why not the ``duopath`` console script: a rule must run the Python of the environment Snakemake
activated for it (``--sdm conda``) on the workflow's own ``src/`` (put on ``PYTHONPATH`` by the
Snakefile), with nothing installed into that environment. ``python -m duopath`` is exactly
that; a console script would be whichever ``duopath`` happens to be first on ``PATH``.
"""

from duopath.cli import app

if __name__ == "__main__":
    app(prog_name="duopath")
