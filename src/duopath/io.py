"""Atomic output writing.

Every file or directory the pipeline produces is first written beside its destination under a
temporary name and then renamed into place (``os.replace`` / ``rename`` are atomic on one
filesystem). A killed job therefore leaves either the old output, nothing, or a ``.tmp-*``
leftover that no rule treats as complete -- never a half-written file under the real name.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd


@contextlib.contextmanager
def atomic_path(dest: Path | str, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; rename it to ``dest`` if the block succeeds.

    The suffix of ``dest`` is kept so writers that dispatch on extension still work.
    On error the temporary file/dir is removed and ``dest`` is left untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dest)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.stem}.tmp-", suffix=dest.suffix, dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    if is_dir:
        tmp.unlink()
    try:
        yield tmp
        if not is_dir:
            # mkstemp creates 0600; give the file the permissions a plain open() would (umask),
            # so group members can read outputs on a shared cluster file system.
            os.chmod(tmp, 0o666 & ~_umask())
        if is_dir and dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temporaries(dest: Path) -> None:
    """Delete leftovers of a killed earlier write of ``dest`` (``.<stem>.tmp-*<suffix>``).

    Safe because Snakemake locks the working directory: no other writer of ``dest`` runs now.
    A killed feature extraction can leave gigabytes behind, so this is not cosmetic.
    """
    for stale in dest.parent.glob(f".{dest.stem}.tmp-*{dest.suffix}"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def write_json(dest: Path | str, obj: Any) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def write_text(dest: Path | str, text: str) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_table(dest: Path | str, df: pd.DataFrame) -> None:
    """Write a DataFrame as parquet, CSV or TSV depending on the destination's suffix."""
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        if dest.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        elif dest.suffix == ".tsv":
            df.to_csv(tmp, sep="\t", index=False)
        else:
            df.to_csv(tmp, index=False)


def write_image(dest: Path | str, image: Any) -> None:
    """Write a PIL image (format from the suffix)."""
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        image.save(tmp, format=_PIL_FORMATS.get(dest.suffix.lower(), "PNG"))


_PIL_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


# --------------------------------------------------------------------------- JSON-ready values


def jsonable(value: object) -> object:
    """``json.dumps(default=...)`` hook: numpy scalars become Python numbers, anything else text."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def json_ready(value: object) -> object:
    """Non-finite floats → None, recursively (JSON has no NaN; callers keep the reason elsewhere,
    e.g. under ``"undefined"``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_ready(v) for v in value]
    return value


def plain_json(value: object) -> object:
    """``value`` as plain JSON types: numpy scalars converted, tuples as lists, NaN as None."""
    return json_ready(json.loads(json.dumps(value, default=jsonable)))
