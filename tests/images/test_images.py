"""The images build from Debian's packages and the package registries alone (no container
registry) with `make images`, and each one starts as a non-root user and runs its program."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
APP_VERSION = str(yaml.safe_load((ROOT / "chart/hpchub/Chart.yaml").read_text())["appVersion"])
TAG = os.environ.get("HPCHUB_TAG") or APP_VERSION

pytestmark = pytest.mark.integration


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    # `make images` is the operator's command; the Docker layer cache makes reruns quick.
    proc = subprocess.run(
        ["make", "-C", str(ROOT), "images"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {name: f"hpchub/{name}:{TAG}" for name in ("hub", "singleuser", "proxy")}


def run(image: str, *cmd: str) -> str:
    proc = docker("run", "--rm", "--network=none", "--entrypoint", cmd[0], image, *cmd[1:])
    assert proc.returncode == 0, f"{image} {cmd}: {proc.stderr}"
    return proc.stdout.strip()


def run_hub_config(image: str, volumes: list[str], then: str) -> subprocess.CompletedProcess[str]:
    """The image's jupyterhub_config.py run on values mounted as the chart mounts them
    (dev login), then ``then`` (Python, with the config ``c``)."""
    mounts = [a for v in volumes for a in ("-v", v)]
    return docker(
        "run",
        "--rm",
        "--network=none",
        *mounts,
        "-e",
        "HPCHUB_VALUES=/usr/local/etc/hpchub/values.yaml",
        "-e",
        "HPCHUB_DUMMY_PASSWORD=hpchub-dev",
        "--entrypoint",
        "python",
        image,
        "-c",
        "from traitlets.config import Config; c = Config();"
        " exec(open('/usr/local/etc/jupyterhub/jupyterhub_config.py').read()); " + then,
    )


def test_hub_image_runs_jupyterhub_6_and_imports_hpchub(images: dict[str, str]) -> None:
    assert run(images["hub"], "jupyterhub", "--version").startswith("6.1.1")
    out = run(
        images["hub"],
        "python",
        "-c",
        "import hpchub, hpchub.config, kubespawner, oauthenticator, asyncssh; print(hpchub.__version__)",
    )
    assert out == APP_VERSION


def test_hub_image_loads_its_config_from_a_values_file(images: dict[str, str], tmp_path: Path) -> None:
    # The image's jupyterhub_config.py + loader, fed the dev values as the chart mounts them.
    from tests.unit.test_config import mounted_values

    (tmp_path / "values.yaml").write_text(yaml.safe_dump(mounted_values("values-dev.yaml")))
    os.chmod(tmp_path, 0o755)
    os.chmod(tmp_path / "values.yaml", 0o644)
    proc = run_hub_config(
        images["hub"], [f"{tmp_path}:/usr/local/etc/hpchub:ro"], "print(c.RemoteSpawner.hub_connect_url)"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "http://hpchub-dev.local:30081"


def test_hub_image_runs_z2jh_style_config_files_and_snippets(images: dict[str, str], tmp_path: Path) -> None:
    # A file hub.extraFiles mounts into the image's jupyterhub_config.d, and a hub.extraConfig
    # snippet importing the image's z2jh module, as z2jh's hub image runs them.
    from tests.unit.test_config import mounted_values

    snippet = (
        "from z2jh import get_config\nc.JupyterHub.template_vars['order'].append(get_config('custom.site'))"
    )
    values = mounted_values(
        "values-dev.yaml", ["custom.site=perlmutter", f"hub.extraConfig.10-z2jh={snippet}"]
    )
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    (tmp_path / "50-site.py").write_text("c.JupyterHub.template_vars['order'] = ['config.d', os.sep]\n")
    for p in (tmp_path, tmp_path / "values.yaml", tmp_path / "50-site.py"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    proc = run_hub_config(
        images["hub"],
        [
            f"{tmp_path}/values.yaml:/usr/local/etc/hpchub/values.yaml:ro",
            f"{tmp_path}/50-site.py:/usr/local/etc/jupyterhub/jupyterhub_config.d/50-site.py:ro",
        ],
        "print(c.JupyterHub.template_vars['order'])",
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[-1] == "['config.d', '/', 'perlmutter']"
    assert "Loading /usr/local/etc/jupyterhub/jupyterhub_config.d config: 50-site.py" in out
    assert "Loading extra config: 10-z2jh" in out


def test_hub_image_keeps_its_state_in_a_real_postgresql(images: dict[str, str], tmp_path: Path) -> None:
    # hub.db.type=postgres as the chart passes it (values + $HPCHUB_DB_URL), with the
    # image's own driver, against a PostgreSQL server on this machine's loopback.
    from tests.harness import minihpc
    from tests.unit.test_config import mounted_values

    pg = minihpc.Postgres(minihpc.make_workdir())  # traversable by the postgres user
    pg.start()
    try:
        sets = ["hub.db.type=postgres", "hub.db.postgres.existingSecret=hub-db"]
        (tmp_path / "values.yaml").write_text(yaml.safe_dump(mounted_values("values-dev.yaml", sets)))
        os.chmod(tmp_path, 0o755)
        os.chmod(tmp_path / "values.yaml", 0o644)
        proc = docker(
            "run",
            "--rm",
            "--network=host",  # the test's PostgreSQL listens on 127.0.0.1 only
            "-v",
            f"{tmp_path}:/usr/local/etc/hpchub:ro",
            "-e",
            "HPCHUB_VALUES=/usr/local/etc/hpchub/values.yaml",
            "-e",
            "HPCHUB_DUMMY_PASSWORD=hpchub-dev",
            "-e",
            f"HPCHUB_DB_URL={pg.url()}",
            "--entrypoint",
            "python",
            images["hub"],
            "-c",
            "from traitlets.config import Config; from jupyterhub import orm; c = Config();"
            " exec(open('/usr/local/etc/jupyterhub/jupyterhub_config.py').read());"
            " db = orm.new_session_factory(c.JupyterHub.db_url)(); db.add(orm.User(name='image-test'));"
            " db.commit(); print(c.JupyterHub.db_url.split('://')[0])",
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.strip() == "postgresql+psycopg"
        assert pg.query("SELECT name FROM users") == [("image-test",)]
    finally:
        pg.stop()
        shutil.rmtree(pg.workdir, ignore_errors=True)


def test_hub_image_carries_the_docs_served_before_login(images: dict[str, str]) -> None:
    listing = run(images["hub"], "ls", "/usr/local/share/hpchub/docs")
    assert set(listing.split()) >= {"user-guide.md", "changelog.md"}


def test_singleuser_image_has_jupyterlab_4_and_jupyterhub_singleuser(
    images: dict[str, str],
) -> None:
    assert run(images["singleuser"], "jupyter", "lab", "--version").startswith("4.")
    assert run(images["singleuser"], "jupyterhub-singleuser", "--version").startswith("6.1.1")
    kernels = run(images["singleuser"], "jupyter", "kernelspec", "list")
    assert "python3" in kernels


def test_singleuser_image_carries_hpchub_notebook_without_nodejs(images: dict[str, str]) -> None:
    """The notebook-side package, built in the image's Node.js stage: both extensions enabled,
    no Node.js left in the image."""
    out = run(
        images["singleuser"],
        "sh",
        "-c",
        "jupyter labextension list 2>&1; jupyter server extension list 2>&1; command -v node || echo no-node",
    )
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    assert "hpchub-notebook v0.1.0 enabled OK (python, hpchub-notebook)" in plain
    assert "hpchub_notebook enabled" in plain and "hpchub_notebook 0.1.0 OK" in plain
    assert plain.endswith("no-node")


def test_proxy_image_runs_configurable_http_proxy(images: dict[str, str]) -> None:
    assert run(images["proxy"], "configurable-http-proxy", "--version") == "4.6.3"


@pytest.mark.parametrize("name", ["hub", "singleuser", "proxy"])
def test_images_run_as_non_root(images: dict[str, str], name: str) -> None:
    assert run(images[name], "id", "-u") != "0"
