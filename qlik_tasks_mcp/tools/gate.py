"""The one confirmation gate for destructive actions.

With a client that can show a form, the user is asked directly (resolver + Elicit) and the action runs
only on an explicit yes. Otherwise the first call changes nothing and returns a preview with a
`confirm_token`; the same call with that token acts. The token is an HMAC over the tool name, its exact
arguments, a fingerprint of the target's current state and an expiry, so any replica holding the same
secret accepts it, nobody can forge it, it fits no other action, and it dies once the action has
changed the state it was minted for.
"""

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from mcp.server.mcpserver import (
    AcceptedElicitation,
    CancelledElicitation,
    Context,
    DeclinedElicitation,
    Elicit,
    ElicitationResult,
)
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from qlik_tasks_mcp.tools.model import Compact

R = TypeVar("R")

CONFIRM_HELP = (
    "Leave empty first: the call then only previews. After the user approves the preview, repeat the "
    "call with the same arguments and this token."
)


class Consent(BaseModel):
    confirm: bool = Field(title="Go ahead", description="Tick to do exactly what is described; leave it to cancel.")


@dataclass
class Plan:
    """What a destructive call would do, computed from the target's current state."""

    action: str
    changes: list[str] = field(default_factory=list)
    state: Any = None
    notes: list[str] = field(default_factory=list)
    # A tool that is destructive only for some arguments (a patch that renames vs one that disables) acts at
    # once when its plan says the change takes nothing away.
    needs_consent: bool = True


class Gated(Compact, Generic[R]):
    status: Literal["done", "confirmation_required", "cancelled"]
    action: str
    changes: list[str] = []
    notes: list[str] = []
    confirm_token: str | None = None
    expires_at: str | None = None
    next_step: str | None = None
    result: R | None = None


# The tool name and exact validated arguments of the call in progress, set by the registrar's wrapper,
# so no tool has to restate what the token is bound to.
_current_call: ContextVar[tuple[str, dict[str, Any]]] = ContextVar("current_call")
# The question the user answered in this call: the resolver and the tool body each read the target, and
# the action may only run if both readings describe the same change.
_shown: ContextVar[str | None] = ContextVar("shown", default=None)


@contextmanager
def bind_call(tool: str, args: dict[str, Any]) -> Iterator[None]:
    token = _current_call.set((tool, args))
    try:
        yield
    finally:
        _current_call.reset(token)


def supports_form_elicitation(ctx: Context) -> bool:
    # Same rule as the SDK: a bare `elicitation: {}` means form support; url-only does not.
    caps = ctx.client_capabilities
    elicitation = caps.elicitation if caps is not None else None
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def _question(plan: Plan) -> str:
    lines = [plan.action, *(f"- {c}" for c in plan.changes), *(f"Note: {n}" for n in plan.notes)]
    return "\n".join(lines) + "\nGo ahead?"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=True)


class Gate:
    def __init__(self, secret: bytes, ttl_seconds: int = 600, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise ValueError("the confirmation secret must be at least 16 bytes")
        self._secret = secret
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._used: dict[str, float] = {}
        self._lock = threading.Lock()

    async def ask(self, ctx: Context, plan_of: Callable[[], Awaitable[Plan]]) -> Elicit[Consent] | None:
        """For a resolver: ask the user when the client can, else let the token path decide."""
        if not supports_form_elicitation(ctx):
            return None
        plan = await plan_of()
        if not plan.needs_consent:
            return None
        question = _question(plan)
        _shown.set(question)
        return Elicit(question, Consent)

    def _sign(self, tool: str, args: dict[str, Any], state: Any, expires: int, nonce: str) -> str:
        material = _canonical([tool, args, hashlib.sha256(_canonical(state).encode()).hexdigest(), expires, nonce])
        digest = hmac.new(self._secret, material.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def mint(self, tool: str, args: dict[str, Any], state: Any) -> tuple[str, int]:
        expires = int(self._clock()) + self.ttl_seconds
        nonce = secrets.token_urlsafe(9)
        return f"v1.{expires}.{nonce}.{self._sign(tool, args, state, expires, nonce)}", expires

    def verify(self, tool: str, args: dict[str, Any], state: Any, token: str) -> None:
        """Raise ToolError unless `token` was minted for exactly this tool, arguments and state, and is fresh."""
        fresh = f"Call {tool} again without confirm_token to get a fresh preview."
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != "v1" or not parts[1].isdigit():
            raise ToolError(f"confirm_token is malformed. {fresh}")
        _, expires_text, nonce, signature = parts
        expected = self._sign(tool, args, state, int(expires_text), nonce)
        if not hmac.compare_digest(expected, signature):
            raise ToolError(
                "confirm_token does not match this action: it was made for another tool or other arguments, "
                f"or the target has changed since the preview. Nothing was changed. {fresh}"
            )
        now = self._clock()
        if now > int(expires_text):
            raise ToolError(f"confirm_token expired. Nothing was changed. {fresh}")
        with self._lock:
            for key, until in list(self._used.items()):
                if until < now:
                    del self._used[key]
            if nonce in self._used:
                raise ToolError(f"confirm_token was already used. Nothing was changed. {fresh}")
            self._used[nonce] = int(expires_text)

    async def run(
        self,
        *,
        plan: Plan,
        consent: ElicitationResult[Consent],
        confirm_token: str | None,
        act: Callable[[], Awaitable[R]],
    ) -> Gated[R]:
        tool, args = _current_call.get()
        args = {k: v for k, v in args.items() if k != "confirm_token"}
        base = {"action": plan.action, "changes": plan.changes, "notes": plan.notes}
        if not plan.needs_consent:
            return Gated[R](status="done", result=await act(), **base)
        if isinstance(consent, DeclinedElicitation | CancelledElicitation) or (
            isinstance(consent, AcceptedElicitation) and isinstance(consent.data, Consent) and not consent.data.confirm
        ):
            return Gated[R](status="cancelled", next_step="The user did not confirm; nothing was changed.", **base)
        asked_and_approved = isinstance(consent, AcceptedElicitation) and isinstance(consent.data, Consent)
        if not asked_and_approved:
            if not confirm_token:
                token, expires = self.mint(tool, args, plan.state)
                return Gated[R](
                    status="confirmation_required",
                    confirm_token=token,
                    expires_at=datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    next_step=(
                        "Nothing was changed. Show this preview to the user; only if they say yes, call "
                        f"{tool} again with the same arguments plus confirm_token."
                    ),
                    **base,
                )
            self.verify(tool, args, plan.state, confirm_token)
        else:
            shown, _ = _shown.get(), _shown.set(None)
            if shown != _question(plan):
                raise ToolError(
                    "The target changed between the question and the answer, so the yes may not cover what "
                    f"would happen now. Nothing was changed. Call {tool} again to be asked afresh."
                )
        result = await act()
        return Gated[R](status="done", result=result, **base)
