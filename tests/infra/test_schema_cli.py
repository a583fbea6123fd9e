"""`pgenrm schema` exports valid JSON Schema (Draft 2020-12) that accepts real events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infra.cli import app
from infra.contracts import MESSAGES
from infra.topics import FEEDBACK, PERSONAS, PROTOTYPES, REWARD_REQUESTS, REWARDS

from .samples import SAMPLES

jsonschema = pytest.importorskip("jsonschema")

BY_NAME = {
    "FeedbackEvent": SAMPLES[FEEDBACK],
    "RewardRequest": SAMPLES[REWARD_REQUESTS],
    "RewardResult": SAMPLES[REWARDS],
    "PersonaState": SAMPLES[PERSONAS],
    "PrototypeState": SAMPLES[PROTOTYPES],
}


def _check(name: str, schema: dict[str, object]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    event = MESSAGES[name].model_validate(BY_NAME[name])
    validator.validate(json.loads(event.model_dump_json()))  # a real event is accepted
    bad = {**json.loads(event.model_dump_json()), "unexpected": 1}
    assert not validator.is_valid(bad)  # extra=forbid is in the schema


def test_schema_prints_valid_json_schema() -> None:
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    schemas = json.loads(result.stdout)
    assert set(schemas) == set(MESSAGES) and len(schemas) == 5
    for name, schema in schemas.items():
        _check(name, schema)


def test_schema_out_writes_five_files(tmp_path: Path) -> None:
    out = tmp_path / "schemas"
    result = CliRunner().invoke(app, ["schema", "--out", str(out)])
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(f"{name}.schema.json" for name in MESSAGES)
    for name in MESSAGES:
        _check(name, json.loads((out / f"{name}.schema.json").read_text()))


def test_request_candidate_bounds_are_in_the_schema() -> None:
    schema = MESSAGES["RewardRequest"].model_json_schema()
    validator = jsonschema.Draft202012Validator(schema)
    req = json.loads(json.dumps(BY_NAME["RewardRequest"]))
    assert validator.is_valid(req)
    assert not validator.is_valid({**req, "candidates": ["only one"]})
    assert not validator.is_valid({**req, "candidates": [str(i) for i in range(17)]})
