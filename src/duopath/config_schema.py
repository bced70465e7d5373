"""The JSON schema of ``config.yaml``, generated from the pydantic models of :mod:`duopath.config`.

Why: editors (VS Code's YAML extension, PyCharm, any yaml-language-server client) complete keys,
show each key's description and flag a wrong key or type while the user types, when the config
names a schema (``# yaml-language-server: $schema=config.schema.json``). Generated, never
written by hand, so it cannot drift from the validation the workflow runs; the repository's
``config.schema.json`` is checked against it by the tests (``duopath config schema --out
config.schema.json`` rewrites it).
"""

from __future__ import annotations

import json
from typing import Any

from duopath.config import DuopathConfig

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def config_schema() -> dict[str, Any]:
    """The schema of the root config as a dict (JSON Schema draft 2020-12, pydantic's output)."""
    schema = DuopathConfig.model_json_schema(mode="validation")
    return {"$schema": SCHEMA_DIALECT, "title": "duopath config.yaml", **{
        k: v for k, v in schema.items() if k != "title"}}


def schema_json() -> str:
    """The schema as stable, indented JSON text (ends with a newline; diff-friendly)."""
    return json.dumps(config_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
