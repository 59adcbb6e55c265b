"""Publish the hub's SSH user CA public key in a ConfigMap, the line login nodes put in
their ``TrustedUserCAKeys`` file.

The chart generates the CA key with Helm's ``genPrivateKey`` (a PKCS#8 PEM, which Debian
12's ``ssh-keygen -y`` refuses), and an operator should never have to copy the private key
out of its Secret to derive the public one. So the hub pod's init container runs
``python -m hpchub.sshca_publish``: it reads the mounted private key and writes its public
key into the ConfigMap the chart created for it (the hub's Role may get and patch that one
ConfigMap only). NOTES.txt then prints

    kubectl get configmap <release>-hpchub-ssh-ca-public -o jsonpath='{.data.trusted-user-ca-keys}'

which outputs exactly that line. It runs at every hub start, so a replaced CA key is
published with the restart that mounts it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import asyncssh

# The ConfigMap key; no dot in it, so kubectl's jsonpath needs no escaping.
KEY = "trusted-user-ca-keys"
COMMENT = "hpchub-user-ca"


def public_key_line(private_key_file: str | os.PathLike[str], comment: str = COMMENT) -> str:
    """The OpenSSH public key line of the CA key (any format asyncssh reads: OpenSSH,
    PKCS#1, PKCS#8), ending in a newline, as a TrustedUserCAKeys file holds it."""
    try:
        key = asyncssh.read_private_key(str(private_key_file))
    except (OSError, asyncssh.KeyImportError) as e:
        raise RuntimeError(f"cannot read the hub's SSH CA key {private_key_file}: {e}") from e
    public = key.convert_to_public()
    public.set_comment(comment)
    return public.export_public_key("openssh").decode()


async def publish(namespace: str, configmap: str, line: str, attempts: int = 10) -> None:
    """Write ``line`` into the ConfigMap's KEY with the pod's service account."""
    from kubernetes_asyncio import client, config
    from kubernetes_asyncio.client.exceptions import ApiException

    config.load_incluster_config()
    async with client.ApiClient() as api:
        core = client.CoreV1Api(api)
        for attempt in range(1, attempts + 1):
            try:
                await core.patch_namespaced_config_map(configmap, namespace, {"data": {KEY: line}})
                return
            except ApiException as e:
                # 403/404: the chart's Role or ConfigMap is missing; retrying will not help.
                if e.status in (401, 403, 404) or attempt == attempts:
                    raise RuntimeError(
                        f"cannot publish the SSH CA public key in ConfigMap {namespace}/{configmap}: "
                        f"{e.status} {e.reason}"
                    ) from e
            except OSError as e:  # the API server not reachable yet
                if attempt == attempts:
                    raise RuntimeError(
                        f"cannot reach the Kubernetes API to publish the SSH CA key: {e}"
                    ) from e
            await asyncio.sleep(min(2 * attempt, 10))


def main() -> int:
    key_file = Path(os.environ.get("HPCHUB_SSH_CA_KEY_FILE", "/usr/local/etc/hpchub-ssh-ca/ca"))
    configmap = os.environ["HPCHUB_SSH_CA_CONFIGMAP"]
    namespace = os.environ["POD_NAMESPACE"]
    try:
        line = public_key_line(key_file)
        asyncio.run(publish(namespace, configmap, line))
    except RuntimeError as e:
        print(f"hpchub: {e}", file=sys.stderr)
        return 1
    print(f"published the SSH user CA public key in ConfigMap {namespace}/{configmap} ({KEY}):")
    print(line, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
