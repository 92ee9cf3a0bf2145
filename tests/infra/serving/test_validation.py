"""Malformed input gets a 4xx naming row and field, never a 5xx: each case by hand, then generated bodies."""

import json

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from mlpipe.blocks import MlflowConnection
from tests.infra.serving.conftest import auth, running, settings
from tests.infra.serving.models import CLOSED, feature_rows

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def endpoint(classifier: str, tracking: MlflowConnection):
    with running(settings(f"{classifier}@champion", max_body_bytes=50_000), tracking) as (base, _):
        yield base


def good_rows() -> list[dict]:
    return json.loads(feature_rows("classification", 3, seed=2).to_json(orient="records"))


def broken(change: str) -> list[dict]:
    """Three good rows, the second broken one way."""
    rows = good_rows()
    row = rows[1]
    if change == "missing":
        del row["income"]
    elif change == "wrong type":
        row["income"] = "lots"
    elif change == "integer given a fraction":
        row["age"] = 41.5
    elif change == "extra":
        row["favourite_colour"] = "blue"
    elif change == "outside category set":
        row[CLOSED] = "CASTLE"
    elif change == "boolean as text":
        row["has_cosigner"] = "yes"
    return rows


CASES = {
    "missing": ("income", "missing field"),
    "wrong type": ("income", "valid number"),
    "integer given a fraction": ("age", "integer"),
    "extra": ("favourite_colour", "does not take"),
    "outside category set": (CLOSED, "'RENT', 'OWN', 'MORTGAGE' or 'OTHER'"),
    "boolean as text": ("has_cosigner", "boolean"),
}


@pytest.mark.parametrize("change", CASES)
def test_a_malformed_row_gets_422_naming_row_and_field(endpoint: str, change: str):
    answer = httpx.post(f"{endpoint}/predict", json=broken(change), headers=auth())
    field, words = CASES[change]
    assert answer.status_code == 422, answer.text
    errors = answer.json()["errors"]
    assert [(error["row"], error["field"]) for error in errors] == [(1, field)]
    assert words in errors[0]["error"]


def test_bodies_that_are_not_rows(endpoint: str):
    post = lambda content: httpx.post(  # noqa: E731
        f"{endpoint}/predict", content=content, headers={**auth(), "Content-Type": "application/json"}
    )
    split = {"dataframe_split": {"columns": ["age"], "data": [[1, 2]]}}
    cases = {
        b"{not json": 400,
        b"[]": 422,
        b'{"instances": []}': 422,
        b'{"inputs": [], "dataframe_records": []}': 422,
        b"42": 422,
        b"[1, 2]": 422,
        json.dumps(split).encode(): 422,
        b"[" + b'{"a": 1},' * 20_000 + b"{}]": 413,
    }
    assert {content[:30]: post(content).status_code for content in cases} == {
        content[:30]: status for content, status in cases.items()
    }


@pytest.fixture(scope="module")
def request_schema(endpoint: str) -> dict:
    document = httpx.get(f"{endpoint}/openapi.json").json()
    return document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]


def from_json_schema(schema: dict) -> st.SearchStrategy:
    """Values a JSON schema allows, for the shapes the endpoint's schema uses (enum, anyOf, objects, arrays)."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema or "oneOf" in schema:
        return st.one_of([from_json_schema(option) for option in schema.get("anyOf") or schema["oneOf"]])
    kind = schema.get("type")
    if kind == "object":
        properties = {name: from_json_schema(value) for name, value in schema["properties"].items()}
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {name: value for name, value in properties.items() if name in required},
            optional={name: value for name, value in properties.items() if name not in required},
        )
    if kind == "array":
        items = from_json_schema(schema.get("items", {"type": "null"}))
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=4)
    simple = {
        "integer": st.integers(-(2**62), 2**62),
        "number": st.floats(allow_nan=False, allow_infinity=False),
        "string": st.text(max_size=10),
        "boolean": st.booleans(),
        "null": st.none(),
    }
    return simple[kind]


def test_bodies_generated_from_the_openapi_schema_are_scored(endpoint: str, request_schema: dict):
    """Every body the published schema allows is scored: the schema promises nothing the endpoint refuses."""

    @examples(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    @given(from_json_schema(request_schema))
    def check(body: object) -> None:
        answer = httpx.post(f"{endpoint}/predict", json=body, headers=auth())
        if isinstance(body, dict) and "dataframe_split" in body:
            assert answer.status_code in (200, 422), answer.text  # the schema cannot tie row length to columns
        else:
            assert answer.status_code == 200, answer.text

    check()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


def test_generated_bad_bodies_never_get_a_5xx(endpoint: str, request_schema: dict):
    good = good_rows()[0]
    mutated_rows = st.fixed_dictionaries({}, optional={name: JSON_VALUES for name in [*good, "extra"]})

    @examples(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        st.one_of(
            JSON_VALUES,
            st.lists(mutated_rows, min_size=1, max_size=3),
            st.builds(lambda rows: {"dataframe_records": rows}, st.lists(mutated_rows, max_size=3)),
            st.builds(lambda data: {"dataframe_split": {"columns": list(good), "data": data}}, JSON_VALUES),
        )
    )
    def check(body: object) -> None:
        answer = httpx.post(f"{endpoint}/predict", json=body, headers=auth())
        assert answer.status_code < 500, (body, answer.text)

    check()
