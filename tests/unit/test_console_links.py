"""Links into a user's notebook that name no server (hpchub.console.links): where
/hub/user-redirect/<path> and the unnamed default server send the user."""

from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest

from hpchub.console.links import link_target
from hpchub.console.page import build_page
from hpchub.grid import Grid
from hpchub.urls import link_rest, unnamed_server_target
from tests.harness.values import nersc_values

GRID = Grid.from_values(nersc_values())
# An nbgitpuller link: /hub/user-redirect/git-pull?repo=...&urlpath=...
GIT_PULL = link_rest("git-pull", "repo=https%3A%2F%2Fexample.org%2Fcourse.git&urlpath=lab%2Ftree%2Fcourse")


def user(**servers: str) -> SimpleNamespace:
    """A user whose named servers are in the given states (ready, starting, stopping, stopped)."""
    spawners = {
        name: SimpleNamespace(
            active=state in ("ready", "starting", "stopping"),
            ready=state == "ready",
            pending={"starting": "spawn", "stopping": "stop"}.get(state),
        )
        for name, state in servers.items()
    }
    orm_user = SimpleNamespace(orm_spawners=dict.fromkeys(spawners), groups=[])
    return SimpleNamespace(name="alice", orm_user=orm_user, spawners=spawners)


def test_link_path_and_query_are_kept_and_cannot_leave_the_server() -> None:
    assert GIT_PULL == "git-pull?repo=https%3A%2F%2Fexample.org%2Fcourse.git&urlpath=lab%2Ftree%2Fcourse"
    assert link_rest("lab/tree/my notebook.ipynb") == "lab/tree/my%20notebook.ipynb"
    assert link_rest("tree/dir/") == "tree/dir/"
    # Dot segments and empty ones are dropped: the link stays below the server's prefix.
    assert link_rest("../../bob/mini-shared/api") == "bob/mini-shared/api"
    assert link_rest("//evil.example/x") == "evil.example/x"
    assert link_rest("") == ""


def test_exactly_one_running_server_gets_the_link() -> None:
    url = link_target(GRID, user(**{"perlmutter-shared": "ready"}), {}, "/", GIT_PULL)
    assert url == f"/user/alice/perlmutter-shared/{GIT_PULL}"


def test_a_starting_server_continues_to_the_link_when_ready() -> None:
    url = link_target(GRID, user(**{"perlmutter-exclusive": "starting"}), {}, "/", GIT_PULL)
    parts = urlsplit(url)
    assert parts.path == "/hub/spawn-pending/alice/perlmutter-exclusive"
    assert parse_qs(parts.query)["next"] == [f"/user/alice/perlmutter-exclusive/{GIT_PULL}"]


@pytest.mark.parametrize(
    "servers",
    [
        {},  # nothing runs
        {"perlmutter-shared": "ready", "spin-shared": "ready"},  # which one?
        {"perlmutter-shared": "stopping"},  # on its way out
        {"perlmutter-shared": "stopped", "notacell": "ready"},  # rows that are not cells
    ],
)
def test_otherwise_the_console_keeps_the_link(servers: dict) -> None:
    assert link_target(GRID, user(**servers), {}, "/", GIT_PULL) == f"/hub/console/open/{GIT_PULL}"


def test_default_cell_is_started_when_nothing_runs_and_opened_when_it_runs() -> None:
    parts = urlsplit(link_target(GRID, user(), {}, "/", GIT_PULL, "perlmutter-shared"))
    assert parts.path == "/hub/spawn/alice/perlmutter-shared"
    assert parse_qs(parts.query)["next"] == [f"/user/alice/perlmutter-shared/{GIT_PULL}"]
    # A configurable default cell opens its form, which keeps the link.
    assert link_target(GRID, user(), {}, "/", GIT_PULL, "perlmutter-configurable").startswith(
        "/hub/console/options/perlmutter-configurable?next=%2Fuser%2Falice%2Fperlmutter-configurable%2Fgit-pull"
    )
    both = user(**{"spin-shared": "ready", "perlmutter-shared": "ready"})
    assert link_target(GRID, both, {}, "/", GIT_PULL, "perlmutter-shared") == (
        f"/user/alice/perlmutter-shared/{GIT_PULL}"
    )
    # Several others run: the user chooses.
    other = user(**{"spin-shared": "ready", "perlmutter-exclusive": "ready"})
    assert link_target(GRID, other, {}, "/", GIT_PULL, "perlmutter-shared").startswith("/hub/console/open/")


def test_a_default_cell_the_user_may_not_start_is_not_started() -> None:
    # Cori is in maintenance in the example; the GPU level needs the gpu-users group.
    assert link_target(GRID, user(), {}, "/", GIT_PULL, "cori-shared").startswith("/hub/console/open/")
    assert link_target(GRID, user(), {}, "/", GIT_PULL, "cori-gpu").startswith("/hub/console/open/")


def test_base_url_prefixes_every_target() -> None:
    assert link_target(GRID, user(), {}, "/jupyter/", GIT_PULL).startswith("/jupyter/hub/console/open/")
    one = user(**{"spin-shared": "ready"})
    assert link_target(GRID, one, {}, "/jupyter/", "lab") == "/jupyter/user/alice/spin-shared/lab"


def test_the_unnamed_servers_spawn_page_goes_to_the_console_with_the_path() -> None:
    alice = user()
    assert unnamed_server_target("/", alice, "/user/alice/lab/tree/x.ipynb?kernel=py") == (
        "/hub/console/open/lab/tree/x.ipynb?kernel=py"
    )
    assert unnamed_server_target("/", alice, "/hub/user/alice/lab") == "/hub/console/open/lab"
    assert unnamed_server_target("/", alice, "/user/alice/") == "/hub/home"
    assert unnamed_server_target("/", alice, "") == "/hub/home"
    # Someone else's URL as next is not followed.
    assert unnamed_server_target("/", alice, "/user/bob/lab") == "/hub/home"


def test_console_cells_point_at_the_link() -> None:
    page = build_page(GRID, user(**{"spin-shared": "ready"}), {}, "/hub/", GIT_PULL)
    spin = page.cell("spin-shared")
    assert spin.open_url == f"/user/alice/spin-shared/{GIT_PULL}"
    pm = page.cell("perlmutter-shared")
    parts = urlsplit(pm.start_url)
    assert parts.path == "/hub/spawn/alice/perlmutter-shared"
    assert parse_qs(parts.query)["next"] == [f"/user/alice/perlmutter-shared/{GIT_PULL}"]
    assert parse_qs(urlsplit(page.cell("perlmutter-configurable").options_url).query)["next"] == [
        f"/user/alice/perlmutter-configurable/{GIT_PULL}"
    ]
    assert page.open_path_display == "git-pull"
    # Without a link, the console is as before.
    plain = build_page(GRID, user(), {}, "/hub/")
    assert plain.cell("perlmutter-shared").start_url == "/hub/spawn/alice/perlmutter-shared"
    assert plain.cell("spin-shared").open_url == "/user/alice/spin-shared/"


def test_the_loader_wires_the_hook_and_refuses_a_default_cell_that_is_not_a_cell() -> None:
    from traitlets.config import Config

    from hpchub.console import setup

    c = Config()
    setup(c, {**nersc_values(), "console": {"defaultCell": "spin-shared"}})
    assert callable(c.JupyterHub.user_redirect_hook)
    assert any(h[0] == r"/console/open/(.*)" for h in c.JupyterHub.extra_handlers)
    with pytest.raises(
        ValueError, match='HPCHUB-R007 console.defaultCell: "perlmutter-bigmem" is not a cell'
    ):
        setup(Config(), {**nersc_values(), "console": {"defaultCell": "perlmutter-bigmem"}})
