"""Atomic writes: a failed write leaves the old output; outputs get umask permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from duopath.io import atomic_path, write_json, write_table


def test_failed_write_keeps_previous_output(tmp_path: Path) -> None:
    dest = tmp_path / "t.parquet"
    write_table(dest, pd.DataFrame({"a": [1, 2]}))
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert pd.read_parquet(dest)["a"].tolist() == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_permissions_follow_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "m.json", {"x": 1})
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "m.json").stat().st_mode)
    assert mode == 0o644


def test_directory_output_replaces_atomically(tmp_path: Path) -> None:
    dest = tmp_path / "s.zarr"
    for content in ("one", "two"):
        with atomic_path(dest, is_dir=True) as tmp:
            tmp.mkdir()
            (tmp / "data").write_text(content)
    assert (dest / "data").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["s.zarr"]
