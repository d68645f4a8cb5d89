"""Who receives a Qalyptus task's reports and what they get: recipients (users, groups, and the addresses the task's
e-mail copies), the e-mail itself (sender, subject, message, on/off), and the task's owner.

Qalyptus keeps recipients as {id, type} (users and groups of the organization); an address that is no user of the
organization can only receive the reports as a copy, through the e-mail's cc. Adding one sends reports outside the
organization, and removing anyone takes reports away from them: both need a yes. Names come from the
organization's users and groups (GET /users, /groups); when those cannot be read, the ids are shown and said so.
"""

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field

from qlik_tasks_mcp.client.errors import ApiError, InvalidInput
from qlik_tasks_mcp.client.qalyptus import EmailDoc, QalyptusClient, QalyptusTaskDoc, RecipientDoc
from qlik_tasks_mcp.tools.fence import quoted, tenant_text_note, untrusted_fields
from qlik_tasks_mcp.tools.gate import Plan
from qlik_tasks_mcp.tools.model import Compact
from qlik_tasks_mcp.tools.operation import destructive, read
from qlik_tasks_mcp.tools.qalyptus.models import (
    EMAIL,
    OrgName,
    QalyptusOrgs,
    Recipient,
    TaskId,
    TaskReport,
    TaskRow,
    owner_id_of,
    owner_label,
    task_label,
    text_of,
)

Who = Annotated[str, Field(min_length=1, max_length=200)]
WhoList = Annotated[
    list[Who] | None,
    Field(max_length=50, description="Users or groups (id, name or e-mail), or e-mail addresses."),
]


@dataclass
class Directory:
    """The organization's users and groups, for names and for turning words into recipients."""

    users: list[dict[str, Any]]
    groups: list[dict[str, Any]]
    note: str | None = None
    users_read: bool = True

    def label(self, kind: str, item: dict[str, Any]) -> str:
        email = f", {item['email']}" if item.get("email") else ""
        return f"{kind} {quoted(str(item.get('name') or ''), 80)} ({item['id']}{email})"

    def find(self, text: str) -> tuple[str, dict[str, Any]] | None:
        """("User" | "Group", the item) named by id, e-mail or name (any case); a name two share is refused."""
        key = text.strip().lower()
        for kind, items in (("User", self.users), ("Group", self.groups)):
            for item in items:
                if key in (str(item.get("id", "")).lower(), str(item.get("email") or "").lower()):
                    return kind, item
        named = [(kind, i) for kind, items in (("User", self.users), ("Group", self.groups)) for i in items]
        matches = [(kind, i) for kind, i in named if str(i.get("name") or "").strip().lower() == key]
        if len(matches) > 1:
            shown = "; ".join(self.label(kind, i) for kind, i in matches[:5])
            raise InvalidInput(f"{text[:60]!r} names several users or groups: give the id of one of {shown}")
        return matches[0] if matches else None

    def unknown(self, text: str, what: str) -> InvalidInput:
        if self.note:
            return InvalidInput(f"{text[:60]!r} cannot be looked up: {self.note}")
        return InvalidInput(f"{text[:60]!r} is no {what} of this Qalyptus organization (give an id, name or e-mail)")

    def user(self, text: str) -> dict[str, Any]:
        found = self.find(text)
        if found is None or found[0] != "User":
            raise self.unknown(text, "user")
        return found[1]


async def directory(api: QalyptusClient, *, groups: bool = True) -> Directory:
    """The organization's users and groups; what cannot be read is said in `note`, never taken as "nobody"."""
    notes: list[str] = []
    found: dict[str, list[dict[str, Any]]] = {"users": [], "groups": []}
    for what in ("users", "groups") if groups else ("users",):
        try:
            found[what] = await (api.users() if what == "users" else api.groups())
        except ApiError as exc:
            notes.append(f"The organization's {what} could not be read (HTTP {exc.status}): their names are not shown.")
    unread = any("users" in n for n in notes)
    return Directory(found["users"], found["groups"], note=" ".join(notes) or None, users_read=not unread)


def split(value: str | None) -> list[str]:
    return [a.strip() for a in (value or "").replace(",", ";").split(";") if a.strip()]


def joined(addresses: list[str]) -> str | None:
    return "; ".join(addresses) or None


class RecipientsView(Compact):
    organization: str
    task_id: str
    recipients: list[Recipient]
    cc: list[str] = Field([], description="Addresses the task's e-mail copies (cc).")
    bcc: list[str] = []
    note: str | None = None


def named(recipients: list[RecipientDoc], found: Directory) -> list[Recipient]:
    rows = []
    for doc in recipients:
        row = Recipient.of(doc)
        items = found.users if (doc.type or "").lower() == "user" else found.groups
        known = next((i for i in items if str(i.get("id")) == doc.id), None)
        if known is not None:
            row.name = row.name or text_of(known.get("name"))
            row.email = row.email or text_of(known.get("email"))
        rows.append(row)
    return rows


async def email_or_note(api: QalyptusClient, task_id: str) -> tuple[EmailDoc | None, str | None]:
    try:
        return await api.email(task_id), None
    except ApiError as exc:
        return None, f"The task's e-mail could not be read (HTTP {exc.status}): its cc/bcc addresses are not shown."


async def view(api: QalyptusClient, task_id: str, found: Directory | None = None) -> RecipientsView:
    recipients = await api.recipients(task_id)
    email, unread = await email_or_note(api, task_id)
    found = found or await directory(api)
    rows = named(recipients, found)
    notes = [found.note, unread, tenant_text_note(("name", "email"))]
    if any(r.name is None for r in rows):
        notes.insert(0, "Recipients without a name are not among the organization's users or groups.")
    return RecipientsView(
        organization=api.name,
        task_id=task_id,
        recipients=rows,
        cc=[text_of(a, 200) or "" for a in split(email.cc if email else None)],
        bcc=[text_of(a, 200) or "" for a in split(email.bcc if email else None)],
        note=" ".join(n for n in notes if n),
    )


@read("Get Qalyptus task recipients")
async def get_qalyptus_task_recipients(
    orgs: QalyptusOrgs, task_id: TaskId, organization: OrgName = None
) -> RecipientsView:
    """Who receives a Qalyptus task's reports: users and groups with names, and cc/bcc addresses."""
    return await view(orgs.get(organization), task_id)


@dataclass
class RecipientChange:
    """What set_qalyptus_task_recipients sends: removals first, then the kept and added recipients, then the cc."""

    removed: list[str]
    recipients: list[dict[str, str]]
    added: bool
    email: dict[str, Any] | None


def resolve_adds(
    add: list[str], current: list[RecipientDoc], found: Directory, cc: list[str]
) -> tuple[list[dict[str, str]], list[str], list[str]]:
    """Words to recipients: {id, type} of users and groups, addresses no user has (copied through the e-mail's cc),
    and a line for each."""
    adds: list[dict[str, str]] = []
    outside: list[str] = []
    changes: list[str] = []
    have = {r.id for r in current}
    for text in add:
        hit = found.find(text)
        if hit is not None:
            kind, item = hit
            if str(item["id"]) in have or any(a["id"] == str(item["id"]) for a in adds):
                raise InvalidInput(f"{found.label(kind, item)} already receives this task's reports")
            adds.append({"id": str(item["id"]), "type": kind})
            changes.append(f"+ {found.label(kind, item)}")
        elif EMAIL.match(text.strip()) and not found.users_read:
            # Whether it is a user's address is not known: it is not copied outside on a guess.
            raise found.unknown(text, "user")
        elif EMAIL.match(text.strip()):
            address = text.strip()
            if address.lower() in (a.lower() for a in cc + outside):
                raise InvalidInput(f"{address} is already copied on this task's e-mail")
            outside.append(address)
            changes.append(f"+ cc {address}: no user of this organization; the reports are copied to it (cc)")
        else:
            raise found.unknown(text, "user or group")
    return adds, outside, changes


def _resolve_removals(
    remove: list[str], rows: list[Recipient], cc: list[str], bcc: list[str]
) -> tuple[list[str], list[str], list[str], list[str]]:
    ids: list[str] = []
    gone_cc: list[str] = []
    gone_bcc: list[str] = []
    changes: list[str] = []
    for text in dict.fromkeys(remove):
        key = text.strip().lower()
        hits = [r for r in rows if r.id and key in (r.id.lower(), (r.email or "").lower(), (r.name or "").lower())]
        if len(hits) > 1:
            shown = ", ".join(f"{r.type} {r.id}" for r in hits[:5])
            raise InvalidInput(f"{text[:60]!r} names several recipients: give the id of one of {shown}")
        if hits:
            row = hits[0]
            if row.id not in ids:
                ids.append(row.id or "")
                changes.append(f"- {row.type} {quoted(row.name or '', 80)} ({row.id})")
            continue
        address = next((a for a in cc if a.lower() == key), None)
        other = next((a for a in bcc if a.lower() == key), None)
        if address is not None:
            gone_cc.append(address)
            changes.append(f"- cc {address}")
        elif other is not None:
            gone_bcc.append(other)
            changes.append(f"- bcc {other}")
        else:
            shown = ", ".join(filter(None, [r.name or r.id for r in rows] + cc + bcc)) or "none"
            raise InvalidInput(f"{text[:60]!r} does not receive this task's reports; its recipients: {shown[:400]}")
    return ids, gone_cc, gone_bcc, changes


async def plan_recipients(
    orgs: QalyptusOrgs, task_id: str, add: list[str] | None, remove: list[str] | None, organization: str | None
) -> Plan:
    if not add and not remove:
        raise InvalidInput("give add or remove (users, groups or e-mail addresses)")
    api = orgs.get(organization)
    task = await api.task(task_id)
    current = await api.recipients(task_id)
    email, unread = await email_or_note(api, task_id)
    found = await directory(api)
    rows = named(current, found)
    cc, bcc = split(email.cc if email else None), split(email.bcc if email else None)
    ids, gone_cc, gone_bcc, removals = _resolve_removals(remove or [], rows, cc, bcc)
    adds, outside, additions = resolve_adds(add or [], current, found, [a for a in cc if a not in gone_cc])
    groups = {str(g.get("id")) for g in found.groups}
    kept = [
        {"id": r.id or "", "type": r.type or ("Group" if r.id in groups else "User")}
        for r in current
        if r.id not in ids
    ]
    body = None
    if outside and email is None:
        raise InvalidInput(f"{outside[0]} would be copied through the task's e-mail (cc), but {unread}")
    if email is not None and (outside or gone_cc or gone_bcc):
        body = email.update_body()
        body["cc"] = joined([a for a in cc if a not in gone_cc] + outside)
        body["bcc"] = joined([a for a in bcc if a not in gone_bcc])
    notes = [n for n in [found.note] if n]
    if ids or gone_cc or gone_bcc:
        notes.append("Those removed no longer receive this task's reports.")
    if outside:
        notes.append("Addresses outside the organization's users receive every report this task sends.")
    return Plan(
        action=f"Change the recipients of {task_label(task)} in {api.name}",
        changes=removals + additions,
        state=[sorted((r.id or "") for r in current), cc, bcc],
        notes=notes,
        needs_consent=bool(removals or outside),
        payload=RecipientChange(ids, kept + adds, bool(adds), body),
    )


@destructive("Set Qalyptus task recipients", plan=plan_recipients, idempotent=True)
async def set_qalyptus_task_recipients(
    orgs: QalyptusOrgs,
    plan: Plan,
    task_id: TaskId,
    add: WhoList = None,
    remove: WhoList = None,
    organization: OrgName = None,
) -> RecipientsView:
    """Add or remove a Qalyptus task's recipients; asks first to remove or to add an outside address."""
    api = orgs.get(organization)
    change: RecipientChange = plan.payload
    if change.removed:
        await api.delete_recipients(task_id, change.removed)
    if change.added:
        # The whole list (kept and added): right whether Qalyptus adds these or replaces the list with them.
        await api.set_recipients(task_id, change.recipients)
    if change.email is not None:
        await api.update_email(task_id, change.email)
    return await view(api, task_id)


# The e-mail ---------------------------------------------------------------------------------------------


class EmailView(Compact):
    organization: str
    task_id: str
    active: bool | None = Field(None, description="false: no e-mail is sent.")
    sender: str | None = None
    subject: str | None = None
    one_to_all: bool | None = Field(None, description="One e-mail to all recipients.")
    reports: list[TaskReport] = Field([], description="Each report's format, attached or embedded.")
    text: str | None = Field(None, description="Subject and message, fenced as tenant text.")


async def email_view(api: QalyptusClient, task_id: str) -> EmailView:
    email = await api.email(task_id)
    reports = await api.task_reports(task_id)
    return EmailView(
        organization=api.name,
        task_id=task_id,
        active=email.is_active,
        sender=text_of(email.sender),
        subject=text_of(email.subject, 200),
        one_to_all=email.one_to_all,
        reports=[TaskReport.of(r) for r in reports],
        text=untrusted_fields([("subject", email.subject), ("message", email.message)], "Qalyptus e-mail")
        if email.subject or email.message
        else None,
    )


@read("Get Qalyptus task email")
async def get_qalyptus_task_email(orgs: QalyptusOrgs, task_id: TaskId, organization: OrgName = None) -> EmailView:
    """A Qalyptus task's e-mail: sender, subject, message, on/off, and each report's attachment setting."""
    return await email_view(orgs.get(organization), task_id)


async def plan_email(
    orgs: QalyptusOrgs,
    task_id: str,
    subject: str | None,
    message: str | None,
    sender: str | None,
    active: bool | None,
    one_to_all: bool | None,
    organization: str | None,
) -> Plan:
    given = {"subject": subject, "message": message, "from": sender, "isActive": active, "oneToAll": one_to_all}
    values = {k: v for k, v in given.items() if v is not None}
    if not values:
        raise InvalidInput("give at least one of subject, message, sender, active, one_to_all")
    if "from" in values and not EMAIL.match(values["from"].strip()):
        raise InvalidInput(f"sender {values['from'][:60]!r} is not an e-mail address")
    if "subject" in values and not values["subject"].strip():
        raise InvalidInput("subject cannot be empty")
    api = orgs.get(organization)
    task = await api.task(task_id)
    before = (await api.email(task_id)).update_body()
    body = before | values
    changes = [
        f"{k}: {text_of(before.get(k), 80) or '(none)'} -> {text_of(body.get(k), 80) or '(none)'}"
        for k in body
        if before.get(k) != body.get(k)
    ]
    if not changes:
        raise InvalidInput("the e-mail already has these values; nothing to change")
    off = before["isActive"] and not body["isActive"]
    return Plan(
        action=f"Update the e-mail of {task_label(task)} in {api.name}",
        changes=changes,
        state=before,
        notes=["With the e-mail off, the task's reports are no longer mailed."] if off else [],
        needs_consent=off,
        payload=body,
    )


@destructive("Update Qalyptus task email", plan=plan_email, idempotent=True)
async def update_qalyptus_task_email(
    orgs: QalyptusOrgs,
    plan: Plan,
    task_id: TaskId,
    subject: Annotated[str | None, Field(max_length=500)] = None,
    message: Annotated[str | None, Field(max_length=20000)] = None,
    sender: Annotated[str | None, Field(max_length=200, description="From address.")] = None,
    active: Annotated[bool | None, Field(description="false stops mailing (asks first).")] = None,
    one_to_all: bool | None = None,
    organization: OrgName = None,
) -> EmailView:
    """Change a Qalyptus task's e-mail: subject, message, sender, on/off (attachments: set_qalyptus_task_report)."""
    api = orgs.get(organization)
    await api.update_email(task_id, plan.payload)
    return await email_view(api, task_id)


# The owner ----------------------------------------------------------------------------------------------


def user_label(user: dict[str, Any]) -> str:
    return f"{quoted(str(user.get('name') or ''), 80)} (Qalyptus user {user['id']})"


def matched_user(users: list[dict[str, Any]], qlik_id: str, email: str) -> dict[str, Any] | None:
    """The organization's user who is this Qlik user: the same id, else the one with the same e-mail (any case).
    Qalyptus users are the organization's own: that they share Qlik's ids is not confirmed (NOTES.md)."""
    same = next((u for u in users if str(u.get("id")) == qlik_id), None)
    if same is not None or not email:
        return same
    hits = [u for u in users if str(u.get("email") or "").strip().casefold() == email.strip().casefold()]
    return hits[0] if len(hits) == 1 and hits[0].get("id") not in (None, "") else None


async def plan_owner(orgs: QalyptusOrgs, task_id: str, owner: str, organization: str | None) -> Plan:
    api = orgs.get(organization)
    task = await api.task(task_id)
    new = (await directory(api, groups=False)).user(owner)
    if str(new["id"]) == owner_id_of(task):
        raise InvalidInput(f"{user_label(new)} already owns this task")
    return Plan(
        action=f"Change the owner of {task_label(task)} in {api.name} from {owner_label(task)} to {user_label(new)}",
        changes=[f"owner: {owner_label(task)} -> {user_label(new)}"],
        state=owner_id_of(task),
        notes=["The new owner can change or delete the task; the old one keeps only what their role allows."],
        payload=str(new["id"]),
    )


@destructive("Change Qalyptus task owner", plan=plan_owner, idempotent=True)
async def change_qalyptus_task_owner(
    orgs: QalyptusOrgs,
    plan: Plan,
    task_id: TaskId,
    owner: Annotated[str, Field(min_length=1, max_length=200, description="User id, name or e-mail.")],
    organization: OrgName = None,
) -> TaskRow:
    """Give a Qalyptus task to another owner."""
    api = orgs.get(organization)
    await api.change_owner(task_id, plan.payload)
    task: QalyptusTaskDoc = await api.task(task_id)
    return TaskRow.of(task)
