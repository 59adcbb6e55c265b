"""A stand-in Kubernetes API server on loopback for the guide's kubectl commands: real
kubectl (its jsonpath, go-template and protobuf request encoding) against a server that
keeps Secrets of namespace "jupyter" by name (GET reads, POST creates, 409 if present) and
accepts namespaces. The same commands run against the kind cluster in the e2e tests."""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from .helm import ROOT

KUBECTL = shutil.which("kubectl", path=f"{ROOT / '.tools/bin'}{os.pathsep}{os.environ.get('PATH', '')}")


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if b < 0x80:
            return value, i


def _fields(buf: bytes) -> Iterator[tuple[int, Any]]:
    """(field number, value) of a protobuf message (varint and length-delimited fields)."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        if key & 7 == 0:
            value, i = _varint(buf, i)
        elif key & 7 == 2:
            n, i = _varint(buf, i)
            value, i = buf[i : i + n], i + n
        else:
            raise ValueError(f"protobuf wire type {key & 7}")
        yield key >> 3, value


def _metadata_name(body: bytes) -> str:
    """metadata.name of a core object kubectl sent as protobuf ("k8s\\0" + runtime.Unknown)."""
    assert body[:4] == b"k8s\0", body[:20]
    return dict(_fields(dict(_fields(dict(_fields(body[4:]))[2]))[1]))[1].decode()


def kubeconfig_for(server: StandInAPIServer, path: Path) -> Path:
    """A kubeconfig at ``path`` whose one cluster is the stand-in."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return path


def secret_from_protobuf(body: bytes) -> dict[str, Any]:
    """kubectl sends core objects as Kubernetes protobuf: "k8s\\0" + runtime.Unknown, whose
    field 2 is the v1.Secret (1: metadata, with 1: name; 2: data, entries of 1: key, 2: value)."""
    assert body[:4] == b"k8s\0", body[:20]
    raw = dict(_fields(body[4:]))[2]
    name, data = "", {}
    for field, value in _fields(raw):
        if field == 1:
            name = dict(_fields(value))[1].decode()
        elif field == 2:
            entry = dict(_fields(value))
            data[entry[1].decode()] = base64.b64encode(entry.get(2, b"")).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "jupyter"},
        "data": data,
    }


class StandInAPIServer(ThreadingHTTPServer):
    """Secrets of namespace "jupyter" by name: GET reads, POST creates (409 if present)."""

    def __init__(self, secrets: dict[str, dict[str, Any]]) -> None:
        self.secrets = secrets
        self.namespaces: list[str] = []  # created, in order
        super().__init__(("127.0.0.1", 0), _APIHandler)


class _APIHandler(BaseHTTPRequestHandler):
    server: StandInAPIServer
    DISCOVERY = {
        "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
        "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
        "/api/v1": {
            "kind": "APIResourceList",
            "groupVersion": "v1",
            "resources": [
                {
                    "name": "secrets",
                    "singularName": "secret",
                    "namespaced": True,
                    "kind": "Secret",
                    "verbs": ["create", "get"],
                },
                {
                    "name": "namespaces",
                    "singularName": "namespace",
                    "namespaced": False,
                    "kind": "Namespace",
                    "verbs": ["create", "get"],
                },
            ],
        },
    }

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, code: int, obj: dict[str, Any]) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _not_found(self) -> None:
        self._answer(
            404,
            {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404},
        )

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        prefix = "/api/v1/namespaces/jupyter/secrets/"
        if path in self.DISCOVERY:
            self._answer(200, self.DISCOVERY[path])
        elif path.startswith(prefix) and path[len(prefix) :] in self.server.secrets:
            self._answer(200, self.server.secrets[path[len(prefix) :]])
        else:
            self._not_found()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path.split("?")[0] == "/api/v1/namespaces":
            name = _metadata_name(body)
            self.server.namespaces.append(name)
            return self._answer(201, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        if self.path.split("?")[0] != "/api/v1/namespaces/jupyter/secrets":
            return self._not_found()
        secret = secret_from_protobuf(body)
        if secret["metadata"]["name"] in self.server.secrets:
            return self._answer(409, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 409})
        self.server.secrets[secret["metadata"]["name"]] = secret
        self._answer(201, secret)
