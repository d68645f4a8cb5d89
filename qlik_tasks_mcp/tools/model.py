"""Tool models: inputs that refuse what they do not know, results that serialize compactly."""

from typing import Any

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer


class Input(BaseModel):
    # A misspelt field (`timezone` for `time_zone`) must be an error: dropped silently, it would schedule in UTC.
    model_config = ConfigDict(extra="forbid")


class Compact(BaseModel):
    @model_serializer(mode="wrap")
    def _drop_empty(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        fields = type(self).model_fields
        # Required fields stay even when empty ("tasks": [] says there are none); optional empties go.
        return {
            k: v
            for k, v in data.items()
            if (k in fields and fields[k].is_required()) or (v is not None and v != [] and v != {})
        }


class Deleted(Compact):
    id: str
    deleted: bool
