"""Configuration: JSON-schema validation with defaults, and per-stage resolved config files.

The workflow config (``config.yaml``) has a few top-level keys (``run``, ``seed``, ``device``,
``data``) and one section per stage. Each section has its own schema in
``ctrg/schema/<section>.schema.yaml`` with a ``default`` and a ``description`` for every key.
A small Snakemake rule writes each section, resolved, to ``<stage>.json``; stages read that
file, so editing one section reruns that stage and its descendants only.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ctrg.runtime import atomic_write_json

SECTIONS: tuple[str, ...] = (
    "data",
    "synth",
    "preprocess",
    "text",
    "text_encoder",
    "stage1",
    "features",
    "stage2",
    "generate",
    "evaluate",
)
"""Config sections, each validated against ``ctrg/schema/<section>.schema.yaml``."""

SHARED_SECTIONS: tuple[str, ...] = ("data", "synth", "preprocess", "text", "text_encoder")
"""Sections shared by all runs: their files carry only ``seed``, so renaming a run or moving
it to another device never reruns data preparation."""

GLOBAL_KEYS: tuple[str, ...] = ("run", "seed", "device")


@cache
def load_schema(name: str) -> dict[str, Any]:
    """Load ``ctrg/schema/<name>.schema.yaml``."""
    text = resources.files("ctrg.schema").joinpath(f"{name}.schema.yaml").read_text()
    return yaml.safe_load(text)


def _extend_with_default(validator_class: type) -> type:
    """A validator that fills in ``default`` values while it validates (jsonschema FAQ recipe)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):  # type: ignore[no-untyped-def]
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_DefaultValidator = _extend_with_default(jsonschema.Draft7Validator)


def validate(instance: Any, schema: dict[str, Any], where: str) -> Any:
    """Validate ``instance`` in place, filling defaults; raise ``ValueError`` naming the key."""
    validator = _DefaultValidator(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    if errors:
        lines = [f"{where}.{'.'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors]
        raise ValueError("invalid configuration:\n  " + "\n  ".join(lines))
    return instance


def resolve(config: dict[str, Any]) -> dict[str, Any]:
    """Return a validated deep copy of the workflow config with every default filled in."""
    resolved = copy.deepcopy(config)
    validate(resolved, load_schema("config"), "config")
    for section in SECTIONS:
        resolved.setdefault(section, {})
        validate(resolved[section], load_schema(section), section)
    return resolved


def section_payload(config: dict[str, Any], section: str) -> dict[str, Any]:
    """The resolved file content of one stage: its section plus the global keys."""
    if section not in SECTIONS:
        raise ValueError(f"unknown config section {section!r}; known: {SECTIONS}")
    resolved = resolve(config)
    keys = ("seed",) if section in SHARED_SECTIONS else GLOBAL_KEYS
    payload = {key: resolved[key] for key in keys}
    payload["section"] = section
    payload[section] = resolved[section]
    return payload


def write_section(config: dict[str, Any], section: str, path: str | Path) -> None:
    """Write the resolved section file atomically (what the ``stage_config`` rule runs)."""
    atomic_write_json(path, section_payload(config, section))


def load_stage_config(path: str | Path | None, section: str) -> dict[str, Any]:
    """Read a resolved stage file, or the schema defaults when ``path`` is None.

    Returns:
        ``{"seed", "section", <section>: {...}}`` (plus ``run`` and ``device`` for model
        stages) with defaults filled.
    """
    if path is None:
        return section_payload({}, section)
    payload = json.loads(Path(path).read_text())
    if payload.get("section") != section:
        raise ValueError(f"{path}: holds section {payload.get('section')!r}, expected {section!r}")
    validate(payload[section], load_schema(section), section)
    return payload


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``overrides`` merged in recursively (neither is modified)."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_config_files(paths: list[Path]) -> dict[str, Any]:
    """Merge workflow YAML configs in order (as ``snakemake --configfile A B`` does) and resolve.

    Raises:
        FileNotFoundError: naming a missing file.
    """
    merged: dict[str, Any] = {}
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"config file {path}: no such file")
        merged = deep_merge(merged, yaml.safe_load(Path(path).read_text()) or {})
    return resolve(merged)


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """Load a workflow YAML config (e.g. ``config.yaml`` or a preset) and resolve it."""
    with open(path) as handle:
        return resolve(yaml.safe_load(handle) or {})
