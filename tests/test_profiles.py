"""Every tool under each sandbox profile (admin, user, retired): the keys and tenants real admins have.

Read tools answer; destructive tools preview. Names are enrichment: a name that could not be read is a note,
never an error. The one error allowed is a tool whose whole API the profile may not use (reload tasks on a
tenant that retired them, the tenant's reloads for a key that is not a TenantAdmin's), and it must say so.
One harness per profile serves all of that profile's calls.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from qlik_tasks_mcp.tools.served import shipped_catalogue
from tests.conftest import Harness, make_harness
from tests.test_tool_mentions import unknown_tools
from tests.tool_samples import sample_args

pytestmark = pytest.mark.anyio

PROFILES = ("admin", "user", "retired")
CALLED = [(item.tool.name, item.effect) for item in shipped_catalogue() if item.effect in ("read", "destructive")]
RETIRED = "this tenant has retired the Reload Tasks API"
# (profile, tool) -> the reason its one error must give: the profile may not use the tool's whole API.
REFUSED = {
    **{
        ("retired", name): RETIRED
        for name in (
            "list_reload_tasks",
            "get_reload_task",
            "update_reload_task",
            "delete_reload_task",
            "migrate_reload_tasks",
        )
    },
    # The samples select reload tasks only.
    ("retired", "set_tasks_enabled"): "reload tasks: API retired on this tenant",
    ("retired", "delete_tasks"): "reload tasks: API retired on this tenant",
    # The sample lists the whole tenant's reloads, which only a TenantAdmin may (reloads.json, RELOADS-003).
    ("user", "list_reloads"): "Only a tenant admin may list every app's reloads",
}
NAMES_NOTE = "Names could not be read"

_harnesses: dict[str, Harness] = {}


@pytest.fixture(scope="module")
def profiles() -> Iterator[dict[str, Harness]]:
    yield _harnesses
    for harness in _harnesses.values():
        anyio.run(harness.backend.aclose)
        assert not harness.recorder.problems, "\n".join(harness.recorder.problems)
    _harnesses.clear()


def harness_of(profiles: dict[str, Harness], profile: str) -> Harness:
    if profile not in _harnesses:
        harness = make_harness(sandbox_profile=profile, sandbox_options={"rate_limits": False})
        _harnesses[profile] = harness
    return profiles[profile]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("tool", "effect"), CALLED)
async def test_every_tool_answers_under_every_profile(
    profiles: dict[str, Harness], profile: str, tool: str, effect: str
) -> None:
    harness = harness_of(profiles, profile)
    args = await sample_args(harness, tool, destructive=effect == "destructive")
    before, sent = harness.sandbox.digest(), len(harness.recorder.exchanges)
    async with harness.client() as client:
        result = await client.call_tool(tool, args)
    text = " ".join(getattr(c, "text", "") for c in result.content)
    assert not unknown_tools(text), (profile, tool, "names tools that do not exist")
    refused = REFUSED.get((profile, tool))
    if refused is not None:
        assert result.is_error and refused in text, (profile, tool, text)
        return
    assert not result.is_error, (profile, tool, text)
    assert result.structured_content is not None
    if effect == "destructive":
        assert result.structured_content["status"] == "confirmation_required", (profile, tool, text)
        assert harness.sandbox.digest() == before, (profile, tool)
    if profile == "admin":
        assert NAMES_NOTE not in text, (tool, text)
    # A lookup the tenant refused during the call is said, once, in the result.
    refusals = [x for x in harness.recorder.exchanges[sent:] if x.path.endswith("/users/actions/filter")]
    if any(x.status == 403 for x in refusals):
        assert text.count(NAMES_NOTE) == 1, (profile, tool, text)
