"""Parameter types many tools share: each says what to pass, briefly, since every token is paid per conversation."""

from typing import Annotated

from pydantic import Field

Limit = Annotated[int, Field(ge=1, le=100, description="Max 100.")]
Cursor = Annotated[str | None, Field(default=None, max_length=4000, description="From next_cursor.")]
# Said at length once, in the server's instructions (server/app.py), not in every destructive tool's schema.
ConfirmToken = Annotated[str | None, Field(default=None, max_length=200)]
# Parameters many tools share, described once in the server's instructions; the schema keeps a short reminder.
SHARED_PARAMETERS = {"organization": "Name; default: the first."}
