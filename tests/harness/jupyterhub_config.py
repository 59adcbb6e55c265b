# Every test hub's config (tests/harness/minihpc.py Hub): configured by hpchub's loader from
# the test values file ($HPCHUB_VALUES), then pointed at the harness's loopback ports, temp DB
# and a test API token. Only what a Kubernetes deployment gets from its Services and PVC is
# overridden here, and the traits a test sets. The one override protocol: $HPCHUB_TEST_OVERRIDES.
import json
import os

with open(os.environ["HPCHUB_TEST_OVERRIDES"]) as f:
    o = json.load(f)
# Without the loader: a plain JupyterHub (the scale bench's peers), configured by the text the
# bench appends to this file; it still gets the harness's ports, database and token below.
if o.get("loader", True):
    from hpchub.config import apply

    # jupyterhub_config.d beside this file runs as in the image (z2jh's layout).
    apply(c, config_dir=os.path.dirname(os.path.abspath(__file__)))  # noqa: F821 - `c` is injected by JupyterHub

if o["db"]:  # else hub.db.type=postgres: the loader took the URL from $HPCHUB_DB_URL
    c.JupyterHub.db_url = o["db"]  # noqa: F821
c.JupyterHub.cookie_secret_file = o["cookie_secret_file"]  # noqa: F821
c.JupyterHub.hub_bind_url = o["hub"]  # noqa: F821
c.JupyterHub.hub_connect_url = o["hub"]  # noqa: F821
c.JupyterHub.bind_url = o["public"]  # noqa: F821
c.ConfigurableHTTPProxy.api_url = o["proxy_api"]  # noqa: F821
# The idle culler calls the hub on the API port the chart fixes; the tests' hub has its own.
for service in c.JupyterHub.services:  # noqa: F821
    if service.get("name") == "idle-culler":
        service["command"] = [
            a.replace("http://127.0.0.1:8081/", o["hub"] + "/", 1) for a in service["command"]
        ]
if o["poll_interval"] is not None:  # None: JupyterHub's own (the bench's peers poll as shipped)
    c.Spawner.poll_interval = o["poll_interval"]  # noqa: F821
# Traits a test sets beyond values (e.g. a short stop confirmation for fault tests, or a
# local spawner for the console's tests of the page itself).
for cls, traits in o.get("traits", {}).items():
    for name, value in traits.items():
        setattr(c[cls], name, value)  # noqa: F821
c.JupyterHub.services.append({"name": "hpchub-tests", "api_token": o["api_token"]})  # noqa: F821
c.JupyterHub.load_roles.append(  # noqa: F821
    {
        "name": "hpchub-tests",
        "scopes": [
            "admin:users",
            "admin:servers",
            "access:servers",
            "read:users",
            "tokens",
        ],
        "services": ["hpchub-tests"],
    }
)
