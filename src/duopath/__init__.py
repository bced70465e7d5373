"""duopath: WSI + RNA-seq disentangled multi-modal learning as a reproducible Snakemake DAG."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("duopath")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
