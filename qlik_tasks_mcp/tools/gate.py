"""The one confirmation gate for destructive actions.

With a client that can show a form, the user is asked directly (resolver + Elicit) and the action runs
only on an explicit yes. Otherwise the first call changes nothing and returns a preview with a
`confirm_token`; the same call with that token acts. The token is an HMAC over the tool name, its exact
arguments, a fingerprint of the target's current state and an expiry, so any replica holding the same
secret accepts it, nobody can forge it, it fits no other action, and it dies once the action has
changed the state it was minted for.

With QLIK_MCP_APPROVAL=human (an `Approvals` store given) no token is ever handed out: the preview
carries an `approve_url` on loopback where a person approves or rejects, and the same call repeated acts
once after Approve. Form elicitation is not used there, since a host may answer a form by itself.

Tenant text (task names, fields) reaches the question, the preview and the page one line per item,
control and format characters escaped, after a label the server writes; the question's last line is
always the server's own.
"""

import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from mcp.server.elicitation import AcceptedUrlElicitation
from mcp.server.mcpserver import (
    AcceptedElicitation,
    CancelledElicitation,
    Context,
    DeclinedElicitation,
    Elicit,
    ElicitationResult,
)
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import UrlElicitationRequiredError
from mcp.types import ElicitRequestURLParams
from pydantic import BaseModel, Field, StrictBool, field_validator

from qlik_tasks_mcp.client.store import MemoryStore, Store, StoreUnavailable
from qlik_tasks_mcp.tools.approval import Approvals, Pending, Preview
from qlik_tasks_mcp.tools.audit import signed_in_person
from qlik_tasks_mcp.tools.fence import escaped
from qlik_tasks_mcp.tools.model import Compact

R = TypeVar("R")

CONFIRM_HELP = (
    "Leave empty first: the call then only previews. After the user approves the preview, repeat the "
    "call with the same arguments and this token."
)


# The question's last line: every line above it starts with a label, so tenant text cannot stand in for it.
QUESTION_END = "Go ahead? (asked by qlik-tasks-mcp; each line above is one labelled item, tenant text escaped)"
# Bounds per shown line and per side of a changed field: generous, and the cut is always said.
LINE_LIMIT = 2000
SIDE_LIMIT = 4000
ABSENT = "(absent)"


def bounded(text: str, limit: int = LINE_LIMIT) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [cut: {len(text) - limit} more characters]"


def shown(text: str) -> str:
    """How one item of tenant-derived text is shown anywhere a person reads it."""
    return bounded(escaped(text))


def _render(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def _window(text: str, first_difference: int, limit: int) -> str:
    """At most `limit` characters of `text`, placed so the first difference is in view."""
    if len(text) <= limit:
        return text
    start = max(0, min(first_difference - limit // 4, len(text) - limit))
    end = start + limit
    before = f"[cut: {start} characters before] ..." if start else ""
    after = f"... [cut: {len(text) - end} more characters]" if end < len(text) else ""
    return f"{before}{text[start:end]}{after}"


class FieldChange(Compact):
    """One changed field, each side as JSON text; `None` when the field is absent on that side."""

    field: str
    before: str | None = None
    after: str | None = None

    @field_validator("field", "before", "after")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        return None if value is None else escaped(value)

    @classmethod
    def of(cls, name: str, before: object, after: object, *, limit: int = SIDE_LIMIT) -> "FieldChange":
        """Values rendered as JSON, each side cut to `limit` around the first difference, the cut said."""
        old = None if before is _MISSING else _render(before)
        new = None if after is _MISSING else _render(after)
        first = _first_difference(old or "", new or "")
        return cls(
            field=name,
            before=None if old is None else _window(old, first, limit),
            after=None if new is None else _window(new, first, limit),
        )


_MISSING = object()


def _first_difference(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def _lookup(source: dict[str, Any], path: str) -> object:
    value: object = source
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]  # type: ignore[index]
    return value


def field_diff(before: dict[str, Any], after: dict[str, Any], fields: Iterable[str]) -> list[FieldChange]:
    """The named fields (dotted paths reach into nested objects) whose values differ, in full within bounds."""
    changes: list[FieldChange] = []
    for name in fields:
        old, new = _lookup(before, name), _lookup(after, name)
        if old is _MISSING and new is _MISSING:
            continue
        if old is _MISSING or new is _MISSING or _render(old) != _render(new):
            changes.append(FieldChange.of(name, old, new))
    return changes


class Consent(BaseModel):
    # Strict: only a JSON `true` is a yes. Lax parsing would read "yes", "1" or 1 from a client's form as true,
    # so an answer that is not the ticked box is refused (nothing is done) rather than taken as consent.
    confirm: StrictBool = Field(
        title="Go ahead", description="Tick to do exactly what is described; leave it to cancel."
    )


@dataclass
class Plan:
    """What a destructive call would do, computed from the target's current state."""

    action: str
    changes: list[str] = field(default_factory=list)
    state: Any = None
    notes: list[str] = field(default_factory=list)
    # Each changed field in full (within bounds); `field_diff` builds it. `changes` stays the short summary.
    diff: list[FieldChange] = field(default_factory=list)
    # A tool that is destructive only for some arguments (a patch that renames vs one that disables) acts at
    # once when its plan says the change takes nothing away.
    needs_consent: bool = True
    # What the action needs that the plan computed (a PUT body, the resolved targets): it acts on exactly that.
    payload: Any = None


def _asker_ids() -> list[str]:
    """The signed-in person, bound into confirm tokens and approvals: one person's yes is not another's."""
    person = signed_in_person()
    return [person["id"]] if person is not None else []


def as_person(plan: Plan) -> Plan:
    """The plan, saying whose rights it acts with when a person signed in (QLIK_MCP_AUTH=oauth)."""
    person = signed_in_person()
    if person is not None:
        plan.notes.append(
            f"Done as {person['name']} (user {person['id']}), signed in to the tenant: their rights apply, and "
            "what the tenant records as changed by the caller names them."
        )
    return plan


class Gated(Compact, Generic[R]):
    status: Literal["done", "confirmation_required", "cancelled"]
    action: str
    changes: list[str] = []
    diff: list[FieldChange] = []
    notes: list[str] = []
    confirm_token: str | None = None
    approve_url: str | None = None
    expires_at: str | None = None
    next_step: str | None = None
    result: R | None = None


# The tool name and exact validated arguments of the call in progress, set by the registrar's wrapper,
# so no tool has to restate what the token is bound to.
_current_call: ContextVar[tuple[str, dict[str, Any]]] = ContextVar("current_call")
# The question the user answered in this call: the resolver and the tool body each read the target, and
# the action may only run if both readings describe the same change.
_shown: ContextVar[str | None] = ContextVar("shown", default=None)
# In human mode, the asking context, so the tool body can open the approval page by URL-mode elicitation.
_asker: ContextVar[Context | None] = ContextVar("asker", default=None)


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


def supports_url_elicitation(ctx: Context) -> bool:
    caps = ctx.client_capabilities
    elicitation = caps.elicitation if caps is not None else None
    return elicitation is not None and elicitation.url is not None


def _diff_lines(change: FieldChange) -> list[str]:
    return [
        f"Field {change.field}, before: {ABSENT if change.before is None else change.before}",
        f"Field {change.field}, after: {ABSENT if change.after is None else change.after}",
    ]


def _question(plan: Plan) -> str:
    lines = [
        f"Action: {shown(plan.action)}",
        *(f"Change: {shown(c)}" for c in plan.changes),
        *(line for change in plan.diff for line in _diff_lines(change)),
        *(f"Note: {shown(n)}" for n in plan.notes),
    ]
    return "\n".join([*lines, QUESTION_END])


def _shown_plan(plan: Plan) -> dict[str, Any]:
    return {
        "action": shown(plan.action),
        "changes": [shown(c) for c in plan.changes],
        "diff": plan.diff,
        "notes": [shown(n) for n in plan.notes],
    }


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=True)


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def store_refusal(exc: StoreUnavailable, tool: str) -> ToolError:
    """One clear line when a confirmation cannot be recorded: it fails closed, nothing acts."""
    return ToolError(
        f"{exc}: without it no confirmation can be checked or recorded, so nothing was changed. "
        f"Call {tool} again once the store answers (QLIK_MCP_REDIS_URL)."
    )


class Gate:
    def __init__(
        self,
        secret: bytes,
        ttl_seconds: int = 600,
        clock: Callable[[], float] = time.time,
        *,
        approvals: Approvals | None = None,
        store: Store | None = None,
        previous: bytes | None = None,
    ) -> None:
        if len(secret) < 16 or (previous is not None and len(previous) < 16):
            raise ValueError("the confirmation secret must be at least 16 bytes")
        self._secret = secret
        # During a rotation, tokens signed with the previous secret are still accepted (never minted).
        self._previous = previous
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        # Where used tokens are remembered: shared by replicas when it is Redis.
        self.store: Store = store or MemoryStore(clock)
        # Set: QLIK_MCP_APPROVAL=human, a person approves on a page; no token is ever handed out.
        self.approvals = approvals

    async def ask(self, ctx: Context, plan_of: Callable[[], Awaitable[Plan]]) -> Elicit[Consent] | None:
        """For a resolver: ask the user when the client can, else let the token (or page) path decide."""
        if self.approvals is not None:
            _asker.set(ctx)
            return None
        if not supports_form_elicitation(ctx):
            return None
        plan = await plan_of()
        if not plan.needs_consent:
            return None
        question = _question(plan)
        _shown.set(question)
        return Elicit(question, Consent)

    def _sign(
        self, tool: str, args: dict[str, Any], state: Any, expires: int, nonce: str, secret: bytes | None = None
    ) -> str:
        state_hash = hashlib.sha256(_canonical(state).encode()).hexdigest()
        material = _canonical([tool, args, state_hash, expires, nonce, *_asker_ids()])
        digest = hmac.new(secret or self._secret, material.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def mint(self, tool: str, args: dict[str, Any], state: Any) -> tuple[str, int]:
        expires = int(self._clock()) + self.ttl_seconds
        nonce = secrets.token_urlsafe(9)
        return f"v1.{expires}.{nonce}.{self._sign(tool, args, state, expires, nonce)}", expires

    async def verify(self, tool: str, args: dict[str, Any], state: Any, token: str) -> None:
        """Raise ToolError unless `token` was minted for exactly this tool, arguments and state, is fresh, and
        was not used before (on any replica sharing the store)."""
        fresh = f"Call {tool} again without confirm_token to get a fresh preview."
        parts = token.split(".")
        # isdigit() alone would take other scripts' digits, which int() then reads.
        if len(parts) != 4 or parts[0] != "v1" or not (parts[1].isascii() and parts[1].isdigit()):
            raise ToolError(f"confirm_token is malformed. {fresh}")
        _, expires_text, nonce, signature = parts
        secrets_ = [self._secret] if self._previous is None else [self._secret, self._previous]
        signed = [self._sign(tool, args, state, int(expires_text), nonce, secret) for secret in secrets_]
        if not any(hmac.compare_digest(expected, signature) for expected in signed):
            raise ToolError(
                "confirm_token does not match this action: it was made for another tool or other arguments, "
                f"or the target has changed since the preview. Nothing was changed. {fresh}"
            )
        now = self._clock()
        if now > int(expires_text):
            raise ToolError(f"confirm_token expired. Nothing was changed. {fresh}")
        try:
            # Atomic set-if-absent: of two calls with one token, on any replicas, exactly one goes on.
            first = await self.store.put(f"token:{nonce}", "used", int(expires_text) - now + 1, only_new=True)
        except StoreUnavailable as exc:
            raise store_refusal(exc, tool) from None
        if not first:
            raise ToolError(f"confirm_token was already used. Nothing was changed. {fresh}")

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
        base = _shown_plan(plan)
        if not plan.needs_consent:
            return Gated[R](status="done", result=await act(), **base)
        if self.approvals is not None:
            return await self._run_approved(self.approvals, tool, args, plan, confirm_token, act)
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
                    expires_at=_utc(expires),
                    next_step=(
                        "Nothing was changed. Show this preview to the user; only if they say yes, call "
                        f"{tool} again with the same arguments plus confirm_token."
                    ),
                    **base,
                )
            await self.verify(tool, args, plan.state, confirm_token)
        else:
            question, _ = _shown.get(), _shown.set(None)
            if question != _question(plan):
                raise ToolError(
                    "The target changed between the question and the answer, so the yes may not cover what "
                    f"would happen now. Nothing was changed. Call {tool} again to be asked afresh."
                )
        result = await act()
        return Gated[R](status="done", result=result, **base)

    def _binding(self, tool: str, args: dict[str, Any], state: Any) -> str:
        material = _canonical([tool, args, hashlib.sha256(_canonical(state).encode()).hexdigest(), *_asker_ids()])
        return hashlib.sha256(material.encode()).hexdigest()

    async def _run_approved(
        self,
        approvals: Approvals,
        tool: str,
        args: dict[str, Any],
        plan: Plan,
        confirm_token: str | None,
        act: Callable[[], Awaitable[R]],
    ) -> Gated[R]:
        """Human mode: act once after the page's Approve, for exactly this call and target state."""
        base = _shown_plan(plan)
        if confirm_token:
            raise ToolError(
                "This server takes no confirm_token (QLIK_MCP_APPROVAL=human): a person approves on a page. "
                f"Call {tool} again without confirm_token to get the preview and its approve_url."
            )
        binding = self._binding(tool, args, plan.state)
        try:
            entry = await approvals.settle(binding)
        except StoreUnavailable as exc:
            raise store_refusal(exc, tool) from None
        if entry is not None and entry.decision == "approved":
            return Gated[R](status="done", result=await act(), **base)
        if entry is not None and entry.decision == "rejected":
            return Gated[R](
                status="cancelled",
                next_step="The user rejected this on the approval page; nothing was changed.",
                **base,
            )
        try:
            entry = entry or await approvals.request(binding, _preview(tool, args, plan), signed_in_person())
        except StoreUnavailable as exc:
            raise store_refusal(exc, tool) from None
        url = approvals.url(entry)
        opened = await self._open_page(tool, plan, entry, url)
        if opened is False:
            with contextlib.suppress(StoreUnavailable):  # it expires on its own
                await approvals.drop(entry)
            return Gated[R](
                status="cancelled",
                next_step="The user declined to open the approval page; nothing was changed.",
                **base,
            )
        where = (
            "The approval page was opened for the user"
            if opened
            else "Ask the user to open approve_url in a browser on this machine"
        )
        return Gated[R](
            status="confirmation_required",
            approve_url=url,
            expires_at=_utc(entry.expires),
            next_step=(
                f"Nothing was changed. {where}; they read the preview there and click Approve or Reject. "
                f"Then call {tool} again with the same arguments: it acts once if they approved."
            ),
            **base,
        )

    async def _open_page(self, tool: str, plan: Plan, entry: Pending, url: str) -> bool | None:
        """Open the page by URL-mode elicitation where the client can: True opened, False declined, None not asked."""
        ctx, _ = _asker.get(), _asker.set(None)
        if ctx is None or not supports_url_elicitation(ctx):
            return None
        message = f"{tool} needs your approval on this page; nothing has changed yet.\n{_question(plan)}"
        if not ctx.request_context.session.can_send_request:
            # Protocols that batch input requests have no mid-call request for URL mode: the spec's error
            # carries the page instead, and the message names it for hosts that only show errors.
            raise UrlElicitationRequiredError(
                [ElicitRequestURLParams(message=message, url=url, elicitation_id=entry.elicitation_id)],
                f"Nothing was changed. The user must approve {tool} at {url} (a browser on this machine); "
                f"then repeat the call with the same arguments.",
            )
        answer = await ctx.elicit_url(message, url, entry.elicitation_id)
        return isinstance(answer, AcceptedUrlElicitation)


def _preview(tool: str, args: dict[str, Any], plan: Plan) -> Preview:
    return Preview(
        tool=tool,
        arguments=bounded(escaped(_render(args)), SIDE_LIMIT),
        action=shown(plan.action),
        changes=[shown(c) for c in plan.changes],
        diff=[
            (c.field, ABSENT if c.before is None else c.before, ABSENT if c.after is None else c.after)
            for c in plan.diff
        ],
        notes=[shown(n) for n in plan.notes],
    )
