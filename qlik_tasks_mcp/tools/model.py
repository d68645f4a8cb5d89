"""Tool models: inputs that refuse what they do not know, results that serialize compactly."""

from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer, model_validator

from qlik_tasks_mcp.tools.arguments import as_list, expects_list


class Input(BaseModel):
    # A misspelt field (`timezone` for `time_zone`) must be an error: dropped silently, it would schedule in UTC.
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _single_as_list(cls, data: Any) -> Any:
        """A single value where a list is expected is taken as a list of one (as a tool's own arguments are)."""
        if not isinstance(data, dict):
            return data
        out: dict[str, Any] = data
        for name, info in cls.model_fields.items():
            key = info.alias or name
            if key in data and expects_list(info.annotation):
                out = out if out is not data else dict(data)
                out[key] = as_list(data[key])
        return out


class Compact(BaseModel):
    @model_serializer(mode="wrap")
    def _drop_empty(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        required = _required(type(self))
        # Required fields stay even when empty ("tasks": [] says there are none); optional empties go.
        return {k: v for k, v in data.items() if k in required or (v is not None and v != [] and v != {})}


@cache
def _required(model: type[BaseModel]) -> frozenset[str]:
    """The model's required fields, by name and alias (read once per model: every row of every result asks)."""
    fields = model.model_fields.items()
    return frozenset(key for name, info in fields if info.is_required() for key in (name, info.alias) if key)


class Deleted(Compact):
    id: str
    deleted: bool
