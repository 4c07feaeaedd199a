"""`serve`'s instance id: given, from the environment, or derived from host and port; always bounded."""

from __future__ import annotations

import pytest

from order_system.domain.errors import ConfigError
from order_system.services.processor import default_instance_id, valid_instance_id
from order_system.interfaces.cli import build_parser


def test_the_environment_wins_else_host_and_port() -> None:
    assert default_instance_id({"ORDER_SYSTEM_INSTANCE_ID": " api-a "}, port=8093) == "api-a"
    derived = default_instance_id({}, port=8093)
    assert derived.endswith("-8093") and derived != default_instance_id({}, port=8094)
    assert valid_instance_id(derived) == derived


@pytest.mark.parametrize("bad", ["", "a b", "x" * 101, "ü", "a/b", "a\nb"])
def test_a_hostile_instance_id_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError):
        valid_instance_id(bad)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--instance-id", bad])
    if bad.strip():
        with pytest.raises(ConfigError):
            default_instance_id({"ORDER_SYSTEM_INSTANCE_ID": bad}, port=8080)


def test_serve_takes_an_instance_id() -> None:
    assert build_parser().parse_args(["serve", "--instance-id", "api-1.b_c"]).instance_id == "api-1.b_c"
