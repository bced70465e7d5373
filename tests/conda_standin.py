"""A stand-in for `conda`, so `snakemake --sdm conda` runs here, where conda channels cannot be reached.

Snakemake's conda support does three things: ``conda env create --file envs/X.yaml --prefix P``
once per env, then ``source <conda>/bin/activate P; <the rule's command>`` for every job of a
rule with ``conda: envs/X.yaml``, after asking ``conda --version`` / ``conda info --json``. This
module answers those calls (run as ``python conda_standin.py <conda arguments>`` by the fake
``conda`` script that :func:`install` writes) and builds each "env" as a plain virtual
environment holding exactly the env file's packages and what they require:

- a venv of the base interpreter WITHOUT system site-packages (so nothing else is importable,
  in particular not duopath, which is installed in the project venv only);
- each distribution of the env file (conda names mapped to PyPI names as tests/test_envs.py
  does), and every distribution those require, LINKED from this interpreter's site-packages
  instead of downloaded: no network here, and it takes well under a second instead of the
  minutes of a real solve. What it proves therefore: the job runs the env's interpreter, finds
  duopath through the workflow's ``src/`` on PYTHONPATH, and needs nothing beyond what the env
  file lists (plus its packages' declared requirements). What it does not prove: that conda-forge
  can solve the file, or that its builds of these packages behave like the PyPI wheels.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONDA_VERSION = "24.7.1"  # the oldest conda Snakemake 9 accepts


def env_distributions(env_file: Path) -> set[str]:
    """PEP 503 names of the env file's packages and, transitively, what they require."""
    sys.path.insert(0, str(HERE))
    from test_envs import env_packages, requirements_of

    names = set(env_packages(env_file))
    for name in list(names):
        names |= requirements_of(name)
    return names


def _installed() -> dict[str, metadata.Distribution]:
    out = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out.setdefault(name.lower().replace("_", "-").replace(".", "-"), dist)
    return out


def build_env(env_file: Path, prefix: Path) -> list[str]:
    """Create the stand-in env at ``prefix``; returns the distributions linked into it."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(prefix)], check=True)
    site = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    installed = _installed()
    linked = []
    for name in sorted(env_distributions(env_file)):
        dist = installed.get(name)
        if dist is None:
            continue  # not installed here (an optional or platform-specific requirement)
        root = Path(str(dist.locate_file("")))
        tops = {Path(str(f)).parts[0] for f in dist.files or []}
        for top in sorted(tops - {"..", "__pycache__"}):
            target = site / top
            if not target.exists() and (root / top).exists():
                target.symlink_to(root / top)
        linked.append(name)
    return linked


def _option(args: list[str], flag: str) -> str:
    value = args[args.index(flag) + 1]
    return value.strip("'\"")


def main(args: list[str], root: Path) -> int:
    """Answer one `conda` call the way Snakemake expects (the calls of snakemake/deployment/conda.py)."""
    if args == ["--version"]:
        print(f"conda {CONDA_VERSION}")
    elif args[:2] == ["info", "--json"]:
        print(json.dumps({"conda_prefix": str(root), "root_prefix": str(root), "platform": "linux-64",
                          "conda_version": CONDA_VERSION}))
    elif args[:2] == ["config", "--get"]:
        print(json.dumps({"get": {"channel_priority": "strict"}, "rc_path": "", "success": True,
                          "warnings": []}))
    elif args[:2] == ["env", "create"]:
        env_file, prefix = Path(_option(args, "--file")), Path(_option(args, "--prefix"))
        linked = build_env(env_file, prefix)
        print(f"stand-in env {prefix} from {env_file}: {len(linked)} distributions linked")
    elif args[:1] == ["clean"]:
        pass  # no package cache to clean: nothing was downloaded
    else:
        print(f"conda stand-in: unsupported call {args}", file=sys.stderr)
        return 2
    return 0


def install(root: Path) -> Path:
    """Write the fake ``conda`` (in ``root/condabin``) and its ``activate``; returns the folder
    to put first on PATH."""
    condabin, bin_dir = root / "condabin", root / "bin"
    condabin.mkdir(parents=True)
    bin_dir.mkdir(parents=True)
    conda = condabin / "conda"
    conda.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" "{root}" "$@"\n')
    conda.chmod(0o755)
    # sourced by the job's shell: what `conda activate` does that matters here (PATH first)
    (bin_dir / "activate").write_text('export CONDA_PREFIX="$1"\nexport PATH="$1/bin:$PATH"\n')
    return condabin


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main(sys.argv[2:], Path(sys.argv[1])))
