"""`pgenrm schema` exports valid JSON Schema (Draft 2020-12) that accepts real events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infra.cli import app
from infra.contracts import MESSAGES
from infra.topics import FEEDBACK, PERSONAS, PROFILES, PROTOTYPES, REWARD_REQUESTS, REWARDS

from .samples import SAMPLES

jsonschema = pytest.importorskip("jsonschema")

BY_NAME = {
    "FeedbackEvent": SAMPLES[FEEDBACK],
    "UserProfile": SAMPLES[PROFILES],
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
    assert set(schemas) == set(MESSAGES) and len(schemas) == 6
    for name, schema in schemas.items():
        _check(name, schema)


def test_schema_out_writes_one_file_per_contract(tmp_path: Path) -> None:
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


def test_profile_schema_needs_preferences_or_prototype() -> None:
    validator = jsonschema.Draft202012Validator(MESSAGES["UserProfile"].model_json_schema())
    base = {"event_id": "p1", "user_id": "u1"}
    assert validator.is_valid({**base, "prototype_id": 3})
    assert validator.is_valid({**base, "stated_preferences": "short answers"})
    # what the model refuses, the schema refuses too
    for bad in (base, {**base, "prototype_id": None, "stated_preferences": None}):
        assert not validator.is_valid(bad)
        with pytest.raises(ValueError, match="stated_preferences or prototype_id"):
            MESSAGES["UserProfile"].model_validate(bad)
    assert not validator.is_valid({**base, "stated_preferences": "   "})
