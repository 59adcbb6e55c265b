"""Where the server extension asks the hub, and how often after failures."""

from __future__ import annotations

from hpchub_notebook.hubclient import backoff, status_url, with_client


def test_status_url_from_jupyterhubs_variables_and_extend_beside_it():
    env = {
        "JUPYTERHUB_API_URL": "http://hub:8081/hub/api",
        "JUPYTERHUB_USER": "a@b",
        "JUPYTERHUB_SERVER_NAME": "perl-cpu",
    }
    url = status_url(env)
    assert url == "http://hub:8081/hub/api/hpchub/servers/a%40b/perl-cpu"
    assert with_client(url, "0.1.0") == url + "?client=hpchub-notebook/0.1.0"
    assert with_client(url, "0.1.0", "/extend") == url + "/extend?client=hpchub-notebook/0.1.0"
    assert status_url({**env, "HPCHUB_STATUS_URL": "https://x/s"}) == "https://x/s"
    assert status_url({}) is None


def test_failures_back_off_to_ten_minutes():
    assert backoff(0, 60) == 60
    assert [backoff(n, 60) for n in (1, 2, 3, 7, 50)] == [15, 30, 60, 600, 600]
