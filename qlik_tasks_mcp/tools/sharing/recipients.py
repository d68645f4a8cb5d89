"""Sharing tasks by recipient ("which reports does Bob receive"): the person resolved once, the tasks matched.

The sharing API filters by the caller's own role only, so tasks are listed page by page (within a bound) and
matched here: the user among user recipients and distribution-list members, their e-mail address among the
address recipients, and their groups among group recipients when the users API names those groups.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qlik_tasks_mcp.client.directory import UserDoc, filter_value
from qlik_tasks_mcp.client.errors import ApiError, InvalidInput
from qlik_tasks_mcp.client.sharing_tasks import SharingTaskDoc
from qlik_tasks_mcp.tools.fence import quoted
from qlik_tasks_mcp.tools.names import Names, user_id_of

# A whole address (not a fragment of one): matched exactly, and kept as an address when no user has it.
_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Recipient:
    """Whom a `recipient` filter means: a tenant user (when one matches), an address, and the user's groups."""

    asked: str
    user: UserDoc | None
    email: str
    # None: the users API did not say which groups the user is in.
    group_ids: frozenset[str] | None

    def receives_as(self, doc: SharingTaskDoc) -> list[str]:
        """How this recipient is among the task's recipients; empty when it is not."""
        values = doc.recipients.values()
        found = []
        if self.user is not None and self.user.id in values["users"]:
            found.append("user")
        if self.user is not None and self.user.id in values["list_users"]:
            found.append("distribution list")
        if self.email and self.email.lower() in {e.lower() for e in values["emails"]}:
            found.append("e-mail address")
        found += [f"group {g}" for g in values["groups"] if self.group_ids and g in self.group_ids]
        return found

    def said(self) -> str:
        """What the filter matched, for the result's note."""
        if self.user is None:
            return f"recipient {quoted(self.asked, 80)}: no tenant user has this address; matched as an address only."
        who = f"{quoted(self.user.name, 80)} (user {self.user.id}, {self.user.email or 'no e-mail'})"
        groups = (
            "their groups are not known (the users API did not list them), so group recipients are not matched"
            if self.group_ids is None
            else f"group recipients matched against their {len(self.group_ids)} groups"
        )
        how = "matched as user, distribution-list member or e-mail address"
        return f"recipient {quoted(self.asked, 80)} is {who}: {how}; {groups}."


def _groups(user: UserDoc) -> frozenset[str] | None:
    assigned = user.wire().get("assignedGroups")
    if not isinstance(assigned, list):
        return None
    return frozenset(str(g["id"]) for g in assigned if isinstance(g, dict) and g.get("id"))


async def _user_of(names: Names, text: str) -> UserDoc | None:
    """The tenant user `text` names; None for a whole e-mail address that no user has (an outside address)."""
    if _ADDRESS.match(text):
        found = await names.api.users(filter_text=f"email eq {filter_value(text, 'recipient')}", limit=2)
        if not found.items:
            return None
        user_id = found.items[0].id
    else:
        user_id = await user_id_of(names, text)
    # Read whole: the e-mail address and, where the tenant lists them, the groups. A key that may not filter the
    # tenant's users (403) may still read one user.
    try:
        docs = await names.api.users_by_id([user_id])
    except ApiError as exc:
        if exc.status != 403:
            raise
        one = await names.api.user(user_id)
        docs = [one] if one else []
    if not docs:
        raise InvalidInput(f"no user has the id {quoted(text, 80)}; give an id, name or e-mail (find_users)")
    return docs[0]


async def resolve_recipient(names: Names, asked: str) -> Recipient:
    """The user (or address) `asked` names: a user id, a name (or part of one) or an e-mail address.

    Raises InvalidInput when it names nobody or several people, listing them so the caller can choose."""
    text = asked.strip()
    if not text:
        raise InvalidInput("recipient is empty: give a user id, name or e-mail address")
    user = await _user_of(names, text)
    if user is None:
        return Recipient(asked=text, user=None, email=text, group_ids=None)
    return Recipient(asked=text, user=user, email=user.email, group_ids=_groups(user))
