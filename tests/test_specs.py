"""The vendored spec copies the tests validate against are the shared contract, byte for byte."""

from __future__ import annotations

import pytest

from tests.spec_check import SHARED_SPECS, SPECS


@pytest.mark.parametrize(
    "name",
    [
        "reload-tasks.json",
        "tasks.json",
        "sharing-tasks.json",
        "scheduling-tasks.json",
        "reloads.json",
        "apps.json",
        "items.json",
        "users.json",
        "spaces.json",
        "NOTES-2026-11.md",
    ],
)
def test_vendored_specs_match_the_shared_contract(name: str) -> None:
    if not SHARED_SPECS.is_dir():
        pytest.skip("../shared/specs is not beside this checkout")
    assert (SPECS / name).read_bytes() == (SHARED_SPECS / name).read_bytes()


def test_patch_values_are_checked_against_the_field_each_path_names() -> None:
    from tests.spec_check import patch_value_problems, raw_spec

    spec = raw_spec("sharing-tasks.json")
    template = "/api/v1/sharing-tasks/{taskId}"
    # The spec's own example: strings, booleans and lists, though it types `value` as an object.
    example = spec["components"]["schemas"]["SharingTaskPatchRequestCompliantList"]["example"]
    assert patch_value_problems("sharing-tasks.json", "PATCH", template, example) == []
    wrong = [
        {"op": "replace", "path": "/enabled", "value": "yes"},
        {"op": "replace", "path": "/name", "value": ""},
        {"op": "replace", "path": "/transportChannels", "value": ["fax"]},
        {"op": "replace", "path": "/scheduleOptions", "value": {"recurrence": "RRULE:FREQ=DAILY"}},
    ]
    problems = patch_value_problems("sharing-tasks.json", "PATCH", template, wrong)
    paths = [p.split(" ", 3)[3].split(")")[0] for p in problems]
    assert paths == ["(/enabled", "(/name", "(/transportChannels", "(/scheduleOptions"]
    settings = [{"op": "replace", "path": "/enable-sharing", "value": "on"}]
    assert patch_value_problems("sharing-tasks.json", "PATCH", "/api/v1/sharing-tasks/settings", settings)
