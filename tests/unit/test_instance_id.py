"""`serve`'s instance id: given, from the environment, or derived from host and port; always bounded."""

from __future__ import annotations

import pytest

from order_system.domain.errors import ConfigError
from order_system.interfaces.api import instance_id_for, valid_instance_id
from order_system.interfaces.cli import build_parser


def test_the_environment_wins_else_host_and_port() -> None:
    assert instance_id_for(8093, {"ORDER_SYSTEM_INSTANCE_ID": " api-a "}) == "api-a"
    derived = instance_id_for(8093, {})
    assert derived.endswith("-8093") and derived != instance_id_for(8094, {})
    assert valid_instance_id(derived) == derived


@pytest.mark.parametrize("bad", ["", "a b", "x" * 101, "ü", "a/b", "a\nb"])
def test_a_hostile_instance_id_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError):
        valid_instance_id(bad)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--instance-id", bad])
    if bad.strip():
        with pytest.raises(ConfigError):
            instance_id_for(8080, {"ORDER_SYSTEM_INSTANCE_ID": bad})


def test_serve_takes_an_instance_id() -> None:
    assert build_parser().parse_args(["serve", "--instance-id", "api-1.b_c"]).instance_id == "api-1.b_c"
