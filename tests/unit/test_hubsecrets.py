"""hub.existingSecret as the hub reads it (hpchub/hubsecrets.py): hpchub's key names and
z2jh's, the operator's Secret winning over the chart's, its values.yaml limited to what the
hub reads, and every refusal naming the key. A real hub on a z2jh-layout Secret is
tests/integration/test_hub_z2jh_config.py; the chart side is tests/chart/test_gitops.py."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
import yaml

from hpchub.hubsecrets import HubSecrets, SecretError, derived_token
from tests.chart.helm import CONFIG, find, render

COOKIE = "c0" * 32
KEY1, KEY2 = "1a" * 32, "2b" * 32


def mounted(tmp_path: Path, data: dict[str, str], env: dict[str, str] | None = None) -> HubSecrets:
    d = tmp_path / "existing-secret"
    d.mkdir(exist_ok=True)
    for k, v in data.items():
        (d / k).write_text(v)
    return HubSecrets("site-tokens", d, env or {})


def test_z2jh_layout_is_read(tmp_path: Path) -> None:
    s = mounted(
        tmp_path,
        {
            "hub.config.JupyterHub.cookie_secret": COOKIE + "\n",
            "hub.config.CryptKeeper.keys": f"{KEY1};{KEY2}",
            "hub.config.ConfigurableHTTPProxy.auth_token": "p" * 40,
            "hub.services.stats.apiToken": "s" * 40,
        },
    )
    assert s.cookie_secret() == COOKIE
    assert s.crypt_keys() == [KEY1, KEY2]
    assert s.require("proxy.token") == "p" * 40
    assert s.service_token("stats") == "s" * 40


def test_hpchub_layout_is_read_and_both_names_must_agree(tmp_path: Path) -> None:
    s = mounted(tmp_path, {"hub.cookie-secret": COOKIE, "hub.crypt-key": KEY1, "proxy.token": "p" * 40})
    assert (s.cookie_secret(), s.crypt_keys(), s.require("proxy.token")) == (COOKIE, [KEY1], "p" * 40)
    (tmp_path / "existing-secret" / "hub.config.JupyterHub.cookie_secret").write_text(COOKIE)
    assert s.cookie_secret() == COOKIE  # the same value under both names is fine
    (tmp_path / "existing-secret" / "hub.config.JupyterHub.cookie_secret").write_text("ff" * 32)
    with pytest.raises(SecretError, match=r"keys hub.cookie-secret and hub.config.JupyterHub.cookie_secret"):
        s.cookie_secret()


def test_the_operators_secret_wins_over_the_charts(tmp_path: Path) -> None:
    env = {"HPCHUB_SERVICE_TOKEN_STATS": "e" * 64, "HPCHUB_METRICS_TOKEN": "m" * 64}
    s = mounted(tmp_path, {"hub.services.stats.apiToken": "s" * 40}, env)
    assert s.service_token("stats") == "s" * 40  # as in z2jh
    assert s.get("hub.metrics-token") == "m" * 64  # the Secret lacks it: the chart's


def test_without_an_existing_secret_nothing_is_read_from_files(tmp_path: Path) -> None:
    d = tmp_path / "existing-secret"
    d.mkdir()
    (d / "hub.services.stats.apiToken").write_text("s" * 40)
    s = HubSecrets("", d, {"HPCHUB_SERVICE_TOKEN_STATS": "e" * 64})
    assert s.service_token("stats") == "e" * 64
    assert s.raw("hub.services.stats.apiToken") is None


@pytest.mark.parametrize(
    ("data", "call", "message"),
    [
        (
            {},
            "cookie_secret",
            "hub.existingSecret (site-tokens, mounted at {dir}): no key hub.cookie-secret (or z2jh's name "
            "hub.config.JupyterHub.cookie_secret); add it: kubectl patch secret site-tokens -p",
        ),
        ({"hub.cookie-secret": "not-hex"}, "cookie_secret", "hub.cookie-secret: expected hex"),
        ({"hub.crypt-key": "short"}, "crypt_keys", "hub.crypt-key: each key must be 32 bytes"),
        ({"hub.crypt-key": f"{KEY1};nope"}, "crypt_keys", "hub.crypt-key: each key must be 32 bytes"),
        ({}, "proxy", "no key proxy.token (or z2jh's name hub.config.ConfigurableHTTPProxy.auth_token)"),
        (
            {},
            "service",
            "hub.services.stats: no API token: hub.existingSecret (site-tokens, mounted at {dir}) has no key "
            "hub.services.stats.apiToken and hub.services.stats.apiToken is not set",
        ),
        (
            {"hub.services.stats.apiToken": "short"},
            "service",
            "hub.services.stats.apiToken: must be 32 to 64 characters",
        ),
        (
            {"hub.services.stats.apiToken": "x" * 65},
            "service",
            "hub.services.stats.apiToken: must be 32 to 64 characters",
        ),
    ],
)
def test_missing_or_malformed_secrets_are_refused_naming_the_key(
    tmp_path: Path, data: dict, call: str, message: str
) -> None:
    s = mounted(tmp_path, data)
    calls = {
        "cookie_secret": s.cookie_secret,
        "crypt_keys": s.crypt_keys,
        "proxy": lambda: s.require("proxy.token"),
        "service": lambda: s.service_token("stats"),
    }
    with pytest.raises(SecretError) as e:
        calls[call]()
    assert message.format(dir=tmp_path / "existing-secret") in str(e.value)
    for value in data.values():  # a refused secret is never printed
        assert value not in str(e.value)


def test_uninstall_token_is_derived_from_the_cookie_secret_as_the_chart_derives_it(tmp_path: Path) -> None:
    # The chart's own derivation (hub/secret.yaml), rendered by real helm.
    docs = render([CONFIG / "values-dev.yaml"], [f"hub.cookieSecret={COOKIE}"])
    chart = base64.b64decode(
        find(docs, "Secret", "t-hpchub-hub-secret")["data"]["hub.uninstall-token"]
    ).decode()
    assert derived_token("uninstall", COOKIE) == chart
    # A z2jh-layout Secret has no uninstall token: the hub and the hook derive the same one.
    s = mounted(tmp_path, {"hub.config.JupyterHub.cookie_secret": COOKIE})
    assert s.uninstall_token() == chart
    (tmp_path / "existing-secret" / "hub.uninstall-token").write_text("u" * 64)
    assert s.uninstall_token() == "u" * 64


def test_values_yaml_is_limited_to_what_the_hub_reads(tmp_path: Path) -> None:
    ok = {
        "hub": {
            "config": {"GenericOAuthenticator": {"client_secret": "shh"}},
            "extraConfig": {"10-x": "pass"},
            "services": {"s": {"url": "http://s"}},
            "loadRoles": {"r": {"scopes": ["list:users"]}},
        },
        "custom": {"a": 1},
    }
    assert mounted(tmp_path, {"values.yaml": yaml.safe_dump(ok)}).values_overlay() == ok
    for bad, message in [
        (
            {"proxy": {"secretToken": "x"}},
            "values.yaml sets proxy.secretToken, which the chart reads at install",
        ),
        ({"hub": {"baseUrl": "/x"}}, "values.yaml sets hub.baseUrl, which the chart reads at install"),
        (
            {"hub": {"services": {"s": {"apiToken": "t" * 40}}}},
            "values.yaml sets hub.services.s.apiToken; put the token in the Secret itself, key hub.services.s.apiToken",
        ),
        (
            {"hub": {"config": {"JupyterHub": {"cookie_secret": COOKIE}}}},
            "values.yaml sets hub.config.JupyterHub.cookie_secret; put it in the Secret itself",
        ),
        ("- a list", "values.yaml: expected a mapping"),
        ("hub:\n  config: {a: [secret-in-line\n", "values.yaml is not YAML (line "),
    ]:
        text = bad if isinstance(bad, str) else yaml.safe_dump(bad)
        sub = tmp_path / str(abs(hash(text)))
        sub.mkdir()
        with pytest.raises(SecretError, match=re.escape(message)) as e:
            mounted(sub, {"values.yaml": text}).values_overlay()
        assert "secret-in-line" not in str(e.value)  # never the Secret's content
