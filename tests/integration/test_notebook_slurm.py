"""What the user guide promises inside a notebook on the HPC side ("Slurm from a notebook"):
a kernel of a login-node server and of a compute-node server submits a job to the real
Slurm with the slurm-magic magics. The kernel is driven through the proxy, as a browser
would: jupyter_server's REST API and the kernel's websocket."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid

import pytest
import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from tests.harness import minihpc

pytestmark = pytest.mark.integration


async def _execute(url: str, headers: dict[str, str], code: str, timeout: float) -> list[dict]:
    """Run ``code`` in the kernel behind the websocket ``url``; the messages it produced."""
    conn = await websocket_connect(HTTPRequest(url, headers=headers, connect_timeout=timeout))
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "msg_type": "execute_request", "session": uuid.uuid4().hex}
    content = {"code": code, "silent": False, "store_history": False, "allow_stdin": False}
    conn.write_message(
        json.dumps(
            {"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": "shell"}
        )
    )
    out: list[dict] = []
    try:
        while True:
            raw = await asyncio.wait_for(conn.read_message(), timeout)
            assert raw is not None, f"the kernel's websocket closed: {out}"
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] in ("stream", "execute_result", "error"):
                out.append(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return out
    finally:
        conn.close()


def run_in_notebook(
    hub: minihpc.Hub, user: str, server: str, cells: list[str], timeout: float = 120
) -> list[str]:
    """Start a Python kernel in the user's server and run ``cells`` one after the other in
    it, like a notebook: the text output of each."""
    base = f"{hub.public}/user/{user}/{server}"
    headers = {"Authorization": f"token {hub.api_token}"}
    r = requests.post(f"{base}/api/kernels", json={"name": "python3"}, headers=headers, timeout=60)
    assert r.status_code == 201, r.text
    kernel = r.json()["id"]
    url = f"ws{base[4:]}/api/kernels/{kernel}/channels"
    outputs = []
    try:
        for code in cells:
            messages = asyncio.run(_execute(url, headers, code, timeout))
            errors = [m["content"] for m in messages if m["msg_type"] == "error"]
            assert not errors, errors
            outputs.append(
                "".join(
                    m["content"].get("text", "") or m["content"].get("data", {}).get("text/plain", "")
                    for m in messages
                )
            )
    finally:
        requests.delete(f"{base}/api/kernels/{kernel}", headers=headers, timeout=60)
    return outputs


@pytest.mark.parametrize("server", ["mini-shared", "mini-exclusive"])
def test_a_notebook_kernel_submits_to_slurm_with_slurm_magic(
    hub: minihpc.Hub, slurm: minihpc.Slurm, server: str
) -> None:
    user = "hpcalice"
    name = f"from-notebook-{secrets.token_hex(3)}"
    outcome, message = hub.start_outcome(user, server)
    assert outcome == "ready", message
    try:
        # The user guide's example, as a notebook runs it: line magics, then a cell magic.
        line, cell, queue = run_in_notebook(
            hub,
            user,
            server,
            [
                # slurm-magic splits a line at blanks (no shell quoting): a script file, then.
                f"open('{name}.sh', 'w').write('#!/bin/bash\\nsleep 120\\n')\n"
                "%load_ext slurm_magic\n"
                "%slurm display raw\n"
                f"job = %sbatch --parsable -J {name} -t 00:05:00 -o /dev/null {name}.sh\n"
                "print(job)\n",
                f"%%sbatch\n#!/bin/bash\n#SBATCH -J {name}-cell -t 00:05:00 -o /dev/null\nsleep 120\n",
                "jobs = %squeue --me\nprint(jobs)\n",
            ],
        )
        job_id = line.strip().splitlines()[-1]
        assert job_id.isdigit(), line
        assert "Submitted batch job" in cell, cell
        # Slurm has both jobs, as the user, under the names the notebook gave them.
        jobs = {j["name"]: j for j in slurm.squeue(user)}
        assert name in jobs and jobs[name]["id"] == job_id, jobs
        assert f"{name}-cell" in jobs, jobs
        assert job_id in queue, queue
    finally:
        minihpc.Path(f"/home/{user}/{name}.sh").unlink(missing_ok=True)
        for job in slurm.squeue(user):
            if job["name"].startswith(name):
                slurm.scancel(job["id"])
        hub.stop_server(user, server)
