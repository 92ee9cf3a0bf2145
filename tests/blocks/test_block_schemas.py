"""Submitting a step serializes the flow's blocks without building their JSON schemas again."""

from typing import Any

import pytest
from prefect.blocks.core import Block
from prefect.blocks.system import Secret
from pydantic.json_schema import GenerateJsonSchema

from mlpipe.blocks import WorkspaceConfig
from mlpipe.prefect_block_schemas import build_block_schemas_once

pytestmark = pytest.mark.unit


class WithSecret(Block):
    """A block holding a secret, as a flow parameter can."""

    token: Secret
    label: str = "demo"


def serialized(block: Block) -> dict[str, Any]:
    """As Prefect serializes a flow run's parameters for each task it submits (`serialize_context`)."""
    return block.model_dump(context={"include_secrets": True}, serialize_as_any=True)


@pytest.fixture
def schemas_built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Block schemas built once in this test (undone after it); the titles of the schemas pydantic builds.

    Pydantic's own method is put back first: a flow run earlier in this process installed the
    schemas built once, and cached some of them (Prefect builds every block class's on starting).
    """
    installed = Block.__dict__["model_json_schema"].__func__
    monkeypatch.setattr(Block, "model_json_schema", classmethod(getattr(installed, "__wrapped__", installed)))
    built: list[str] = []
    generate = GenerateJsonSchema.generate

    def counted(self: GenerateJsonSchema, *args: Any, **kwargs: Any) -> dict[str, Any]:
        schema = generate(self, *args, **kwargs)
        built.append(schema.get("title", "?"))
        return schema

    monkeypatch.setattr(GenerateJsonSchema, "generate", counted)
    expected = {"workspace": serialized(WorkspaceConfig().resolve()), "secret": serialized(_with_secret())}
    build_block_schemas_once()
    build_block_schemas_once()
    assert serialized(WorkspaceConfig().resolve()) == expected["workspace"]
    assert serialized(_with_secret()) == expected["secret"]
    return built


def _with_secret() -> WithSecret:
    return WithSecret(token=Secret(value="s3cret-value"))


def test_the_second_serialization_builds_no_schema_and_keeps_the_secrets(schemas_built: list[str]):
    assert {"WithSecret", "MlflowConnection"} <= set(schemas_built), "each class's schema is built once"
    schemas_built.clear()
    serialized(WorkspaceConfig().resolve())
    assert serialized(_with_secret())["token"]["value"] == "s3cret-value"
    assert schemas_built == []


def test_each_caller_gets_a_schema_of_its_own(schemas_built: list[str]):
    first = WorkspaceConfig.model_json_schema()
    first["title"] = "edited by a caller"
    first["properties"].clear()
    again = WorkspaceConfig.model_json_schema()
    assert again["title"] == "WorkspaceConfig" and again["properties"]
    assert WorkspaceConfig.model_json_schema(by_alias=False)["title"] == "WorkspaceConfig"
