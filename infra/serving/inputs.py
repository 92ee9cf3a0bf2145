"""What a scoring request must hold, from the model's signature and data contract: a 422 naming row and field.

The body is parsed once (orjson) and its rows checked by one pydantic-core validator built when
the model loads: a missing field, a value of the wrong type, a field the model does not take and
a value outside a declared category set each come back as `{row, field, error}`. Only what a
contract *promises* is enforced: categories merely seen in training are not (drifted data must
still be scored, and the drift check sees it).
"""

from dataclasses import dataclass
from typing import Annotated, Any, Literal, NotRequired

import numpy as np
import orjson
import pandas as pd
from pydantic import ConfigDict, Strict, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from mlpipe.tasks.contract import DataContract
from mlpipe.tasks.data.columns import InputColumn

RECORD_KEYS = ("dataframe_records", "inputs")
"""MLflow's request keys that hold a list of records (a bare list of records is accepted too)."""
SPLIT_KEY = "dataframe_split"
INTEGER_TYPES = {"long", "integer"}
FLOAT_TYPES = {"double", "float"}
DTYPES = {"long": "int64", "integer": "int32", "double": "float64", "float": "float32", "boolean": "bool"}


class BadRequest(Exception):
    """A request the model cannot score: the status and what to tell the caller."""

    def __init__(self, status: int, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []


@dataclass(frozen=True)
class Column:
    name: str
    mlflow_type: str
    nullable: bool
    required: bool
    categories: tuple[Any, ...] | None


class RowSchema:
    """The rows one model version takes: the validator, its JSON schema and the frame the model is given."""

    def __init__(self, inputs: list[InputColumn], contract: DataContract | None) -> None:
        self.columns = [_column(spec, contract) for spec in inputs]
        fields = {column.name: _annotation(column) for column in self.columns}
        row = TypedDict("Row", fields)  # type: ignore[misc]  # built from the model's signature
        row.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
        self._rows: TypeAdapter[Any] = TypeAdapter(list[row])
        self.row_json_schema: dict[str, Any] = TypeAdapter(row).json_schema()

    def parse(self, body: bytes) -> pd.DataFrame:
        """The body's rows as the frame the model takes (BadRequest as `rows`)."""
        return self.frame(self.rows(body))

    def rows(self, body: bytes) -> list[dict[str, Any]]:
        """The body's rows, checked.

        Raises:
            BadRequest: 400 for a body that is not JSON, 422 naming row and field for rows that break the schema.
        """
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise BadRequest(400, f"the body is not JSON: {error}") from None
        records = _records(document)
        try:
            rows = self._rows.validate_python(records)
        except ValidationError as error:
            raise BadRequest(422, "rows do not match the model's inputs", _row_errors(error)) from None
        if not rows:
            raise BadRequest(422, "the request holds no rows")
        return rows

    def frame(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        """Columns typed as MLflow's schema enforcement would type them, so the model sees what pyfunc gives it."""
        data = {}
        for column in self.columns:
            values = [row.get(column.name) for row in rows]
            dtype = DTYPES.get(column.mlflow_type, "object")
            if dtype == "bool" and any(value is None for value in values):
                dtype = "object"
            data[column.name] = np.array(values, dtype=dtype)
        return pd.DataFrame(data)

    def request_json_schema(self) -> dict[str, Any]:
        """The accepted bodies: records, or MLflow's `dataframe_records`, `inputs` or `dataframe_split`."""
        row = self.row_json_schema
        records = {"type": "array", "items": row, "minItems": 1}
        split = {
            "type": "object",
            "properties": {
                "columns": {"type": "array", "items": {"type": "string", "enum": [c.name for c in self.columns]}},
                "data": {"type": "array", "items": {"type": "array"}, "minItems": 1},
            },
            "required": ["columns", "data"],
            "additionalProperties": False,
        }
        keyed = [
            {"type": "object", "properties": {key: records}, "required": [key], "additionalProperties": False}
            for key in RECORD_KEYS
        ]
        wrapped_split = {
            "type": "object",
            "properties": {SPLIT_KEY: split},
            "required": [SPLIT_KEY],
            "additionalProperties": False,
        }
        return {"oneOf": [records, *keyed, wrapped_split]}


def _column(spec: InputColumn, contract: DataContract | None) -> Column:
    promised = None
    if contract is not None and spec.name in contract.feature_names:
        promised = contract.column(spec.name)
    nullable = promised.max_null_fraction > 0 if promised else not spec.required
    if spec.type in INTEGER_TYPES:
        nullable = False  # MLflow refuses a null in an integer column: refused here first, with its row
    categories = tuple(promised.allowed_values) if promised and promised.allowed_values else None
    return Column(spec.name, spec.type, nullable, spec.required, categories)


def _annotation(column: Column) -> Any:
    kind: Any
    if column.categories is not None:
        kind = Literal[column.categories]
    elif column.mlflow_type in INTEGER_TYPES:
        kind = Annotated[int, Strict()]
    elif column.mlflow_type in FLOAT_TYPES:
        kind = Annotated[float, Strict()]  # takes integers too
    elif column.mlflow_type == "boolean":
        kind = Annotated[bool, Strict()]
    else:
        kind = Annotated[str, Strict()]
    if column.nullable:
        kind = kind | None
    return kind if column.required else NotRequired[kind]


def _records(document: Any) -> Any:
    """The list of records in any accepted body shape (checked as rows afterwards)."""
    if isinstance(document, list):
        return document
    if not isinstance(document, dict) or len(document) != 1:
        shape = sorted(document) if isinstance(document, dict) else type(document).__name__
        raise BadRequest(
            422, f"expected a list of records or one of {[*RECORD_KEYS, SPLIT_KEY]} as the only key, got {shape}"
        )
    ((key, value),) = document.items()
    if key in RECORD_KEYS:
        if isinstance(value, dict):  # MLflow's `inputs` as columns: {"col": [v, …]}
            return _columns_to_records(value, key)
        return value
    if key == SPLIT_KEY:
        return _split_to_records(value)
    raise BadRequest(
        422, f"unknown request key {key!r}: expected a list of records or one of {[*RECORD_KEYS, SPLIT_KEY]}"
    )


def _columns_to_records(columns: dict[str, Any], key: str) -> list[dict[str, Any]]:
    lengths = {name: len(values) if isinstance(values, list) else -1 for name, values in columns.items()}
    if not lengths or -1 in lengths.values() or len(set(lengths.values())) != 1:
        raise BadRequest(422, f"{key!r} as columns must map each column to a list of one length, got lengths {lengths}")
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _split_to_records(split: Any) -> list[Any]:
    if not isinstance(split, dict) or not isinstance(split.get("columns"), list) or "data" not in split:
        raise BadRequest(422, f"{SPLIT_KEY!r} must be an object with 'columns' (a list) and 'data'")
    columns, data = split["columns"], split["data"]
    if not all(isinstance(name, str) for name in columns) or not isinstance(data, list):
        raise BadRequest(422, f"{SPLIT_KEY!r}: 'columns' must be names and 'data' a list of rows")
    records: list[Any] = []
    for row, values in enumerate(data):
        if not isinstance(values, list) or len(values) != len(columns):
            raise BadRequest(
                422,
                "rows do not match the model's inputs",
                [{"row": row, "field": None, "error": f"expected a list of {len(columns)} values (one per column)"}],
            )
        records.append(dict(zip(columns, values, strict=True)))
    return records


def _row_errors(error: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as `{row, field, error}`, the field named even when it is missing or extra."""
    found = []
    for item in error.errors(include_url=False, include_input=False):
        location = [part for part in item["loc"] if not (isinstance(part, str) and part.startswith("literal["))]
        row = location[0] if location and isinstance(location[0], int) else None
        field = next((part for part in location[1:] if isinstance(part, str)), None)
        kind = item["type"]
        message = {"missing": "missing field", "extra_forbidden": "field the model does not take"}.get(
            kind, item["msg"]
        )
        found.append({"row": row, "field": field, "error": message})
    return found
