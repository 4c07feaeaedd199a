"""API tokens from the environment, and secrets kept out of reprs and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from order_system.interfaces.auth import ENV, ApiTokens
from order_system.config import Settings, masked
from order_system.domain.errors import ConfigError

ALICE, BOB = "a" * 20, "b-0123456789abcdef"


def test_unset_or_blank_means_authentication_off() -> None:
    assert ApiTokens.from_env({}) is None and ApiTokens.from_env({ENV: "  "}) is None


def test_pairs_in_the_variable() -> None:
    tokens = ApiTokens.from_env({ENV: f"{ALICE}=alice, {BOB}=bob"})
    assert tokens is not None and len(tokens) == 2
    assert (tokens.customer(ALICE), tokens.customer(BOB), tokens.customer("c" * 20)) == ("alice", "bob", None)
    assert tokens.customer("x" * 100_000) is None


def test_pairs_in_a_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"# who may call the API\n{ALICE} = alice\n\n{BOB}=bob  # the second customer\n")
    tokens = ApiTokens.from_env({ENV: f"@{path}"})
    assert tokens is not None and tokens.customer(BOB) == "bob"
    with pytest.raises(ConfigError, match="cannot read"):
        ApiTokens.from_env({ENV: f"@{tmp_path / 'missing'}"})


@pytest.mark.parametrize(("value", "problem"), [
    ("just-a-token-no-customer", "entry 1 is not of the form token=customerId"),
    (f"{ALICE}=alice,short=bob", "entry 2: a token must be 16 to 512"),
    (f"{ALICE}=alice,{ALICE}=bob", "entry 2: the same token is given twice"),
    (f"{ALICE}={'c' * 65}", "longer than 64"),
    (" , ", "names no token"),
])
def test_bad_entries_are_named_without_their_token(value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as raised:
        ApiTokens.parse(value)
    assert ALICE not in str(raised.value) and "short" not in str(raised.value)


def test_repr_shows_no_token() -> None:
    tokens = ApiTokens({ALICE: "alice", BOB: "alice"})
    assert repr(tokens) == "ApiTokens(2 token(s) for 1 customer(s))"
    assert ALICE not in repr(vars(tokens))  # only digests are kept


def test_settings_repr_masks_every_secret_option() -> None:
    env = {"KAFKA_SASL_PASSWORD": "hunter2", "KAFKA_SSL_KEY_PASSWORD": "pw-key", "KAFKA_SSL_KEYSTORE_PASSWORD": "pw-ks",
           "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET": "oauth-secret", "KAFKA_SASL_JAAS_CONFIG": "jaas-secret",
           "KAFKA_SSL_KEY_PEM": "-----BEGIN PRIVATE KEY-----", "KAFKA_SASL_USERNAME": "svc"}
    settings = Settings.from_env(env)
    shown = f"{settings!r} {settings} {[settings]}"
    for secret in ("hunter2", "pw-key", "pw-ks", "oauth-secret", "jaas-secret", "PRIVATE KEY"):
        assert secret not in shown
    assert "'sasl.username': 'svc'" in shown and "'sasl.password': '***'" in shown
    assert settings.client_config()["sasl.password"] == "hunter2"  # the client still gets it
    assert masked({"ssl.ca.location": "/ca.pem", "sasl.password": "x"}) == {"ssl.ca.location": "/ca.pem",
                                                                          "sasl.password": "***"}
