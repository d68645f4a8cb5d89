"""The vendored spec copies the tests validate against are the shared contract, byte for byte."""

from __future__ import annotations

import pytest

from tests.spec_check import SHARED_SPECS, SPECS


@pytest.mark.parametrize("name", ["reload-tasks.json", "tasks.json", "sharing-tasks.json", "scheduling-tasks.json"])
def test_vendored_specs_match_the_shared_contract(name: str) -> None:
    if not SHARED_SPECS.is_dir():
        pytest.skip("../shared/specs is not beside this checkout")
    assert (SPECS / name).read_bytes() == (SHARED_SPECS / name).read_bytes()
