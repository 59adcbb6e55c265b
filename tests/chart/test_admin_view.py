"""The admin view's configuration (issue 11 point 10): its routes in the hub, and admins
who can log in with the development authenticator. The view itself is tested in a real
browser: tests/browser/test_console_hpc.py (test_admin_*, test_non_admin_*)."""

from __future__ import annotations

from jupyterhub.authenticators.shared import SharedPasswordAuthenticator

from hpchub.console.admin import AdminServersHandler, AdminStopHandler, fmt_age
from tests.unit.test_config import configured, mounted_values

from .helm import CONFIG, find, render, render_error

MINIMAL = CONFIG / "values-minimal.yaml"
ADMIN_PW = "an-admin-password-of-32-characters!!"
ADMINS = ["hub.adminUsers={ops}", f"auth.dummy.adminPassword={ADMIN_PW}"]


def test_admin_view_routes_are_in_the_hub() -> None:
    c = configured("values-minimal.yaml")
    routes = {h[0]: h[1] for h in c.JupyterHub.extra_handlers}
    assert routes[r"/console/admin/?"] is AdminServersHandler
    assert routes[r"/console/admin/stop/([^/]+)/([^/]+)"] is AdminStopHandler


def test_dev_authenticator_admins_get_their_own_password_from_a_secret() -> None:
    c = configured("values-minimal.yaml", ADMINS)
    auth = SharedPasswordAuthenticator(config=c)
    assert auth.admin_password == ADMIN_PW and auth.user_password != ADMIN_PW
    assert "ops" in c.Authenticator.admin_users
    # Like the shared password, it never sits in the hub's mounted values file.
    assert "adminPassword" not in mounted_values("values-minimal.yaml", ADMINS)["auth"]["dummy"]
    docs = render([MINIMAL], ADMINS)
    hub = find(docs, "Deployment", "t-hpchub-hub")["spec"]["template"]["spec"]["containers"][0]
    ref = next(e for e in hub["env"] if e["name"] == "HPCHUB_DUMMY_ADMIN_PASSWORD")["valueFrom"][
        "secretKeyRef"
    ]
    assert ref["key"] in find(docs, "Secret", ref["name"])["data"]


def test_admins_who_could_never_log_in_are_refused_at_install() -> None:
    # JupyterHub admits hub.adminUsers of the shared-password authenticator only with an
    # admin password: without one they would be locked out silently.
    err = render_error([MINIMAL], ["hub.adminUsers={ops}"])
    assert "auth.dummy.adminPassword: required" in err
    err = render_error([MINIMAL], ["hub.adminUsers={ops}", "auth.dummy.adminPassword=too-short"])
    assert "/auth/dummy/adminPassword" in err
    same = "x" * 32
    err = render_error(
        [MINIMAL], ["hub.adminUsers={ops}", f"auth.dummy.adminPassword={same}", f"auth.dummy.password={same}"]
    )
    assert "auth.dummy.adminPassword: must differ" in err


def test_ages_read_like_a_person_would_say_them() -> None:
    assert [fmt_age(s) for s in (None, 5, 600, 3 * 3600 + 300, 2 * 86400 + 4 * 3600)] == [
        "",
        "5 s",
        "10 min",
        "3 h 05 min",
        "2 d 4 h",
    ]
