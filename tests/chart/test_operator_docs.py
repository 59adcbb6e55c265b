"""The operator docs stay true to the chart: every YAML example in the operator guide
installs, and every values key the guides name exists in the values schema (the z2jh
mapping's keys: tests/chart/test_coming_from_z2jh.py)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml

from .helm import CHART, CONFIG, ROOT, helm, template_args

GUIDE = ROOT / "docs/operator-guide.md"
SCHEMA = yaml.safe_load((CHART / "values.schema.yaml").read_text())


def yaml_examples() -> list[str]:
    blocks = re.findall(r"^( *)```yaml\n(.*?)^\1```", GUIDE.read_text(), flags=re.S | re.M)
    return [textwrap.dedent(body) for _indent, body in blocks]


@pytest.mark.parametrize("example", yaml_examples(), ids=lambda e: e.splitlines()[0][:40])
def test_every_yaml_example_of_the_guide_installs(example: str, tmp_path: Path) -> None:
    f = tmp_path / "example.yaml"
    f.write_text(example)
    # Over one of the example sites (dev: the mini HPC system; NERSC: perlmutter, cori),
    # with the placeholder Secret names the examples use.
    errors = []
    for base in ("values-dev.yaml", "values-nersc-example.yaml"):
        proc = helm(*template_args([CONFIG / base, f]), check=False)
        if proc.returncode == 0:
            return
        errors.append(f"over {base}: {proc.stderr.strip()}")
    pytest.fail("\n".join(errors))


def schema_has(path: str) -> bool:
    """Whether a dotted values path exists in the schema (<...> segments are map keys)."""
    node = SCHEMA
    for part in path.split("."):
        node = _deref(node)
        props = node.get("properties") or {}
        if part in props:
            node = props[part]
        elif part.startswith("<") and isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        elif (
            node.get("additionalProperties") is True
            or node.get("type") in ("object", ["object", "array"])
            and "properties" not in node
        ):
            return True  # a pass-through object (hub.config.<Class>.<trait>, affinity)
        else:
            return False
    return True


def _deref(node: dict) -> dict:
    ref = node.get("$ref")
    return SCHEMA["definitions"][ref.rsplit("/", 1)[-1]] if ref else node


TOP = tuple(SCHEMA["properties"])


DOCS = sorted((ROOT / "docs").glob("*.md"))
# The docs whose values paths are checked: the guides and the pages on security,
# reliability and performance (not the changelog, which names keys of earlier releases,
# nor the z2jh mapping, whose left column is z2jh's keys and is checked above).
CHECKED_DOCS = [
    ROOT / "docs" / n
    for n in ("operator-guide.md", "user-guide.md", "security.md", "reliability.md", "performance.md")
]


def _contexts(node: dict = SCHEMA, path: str = "") -> list[tuple[str, dict]]:
    """Every object of the schema that has named properties, with its values path (map
    keys as ``<name>``): where a path the docs give relative to it may sit."""
    node = _deref(node)
    out = [(path, node)] if path and node.get("properties") else []
    for name, child in (node.get("properties") or {}).items():
        out += _contexts(child, f"{path}.{name}" if path else name)
    if path and isinstance(node.get("additionalProperties"), dict):
        out += _contexts(node["additionalProperties"], f"{path}.<name>")
    return out


CONTEXTS = _contexts()
# First segments of relative paths (`ssh.idleSeconds` under systems.<name>, `slurm.partition`
# under a level): a property of some object below the top level.
RELATIVE_STARTS = {k for _path, node in CONTEXTS for k in node.get("properties") or {}} - set(TOP)


def guide_keys(path: Path) -> list[str]:
    """Dotted values paths a doc names in backticks: absolute (`culling.every`,
    `systems.<s>.slurm.emailOnStart`) and relative to an object of the values
    (`ssh.idleSeconds`, `status.forceCommand`); `<release>-...` names, commands and
    Secret keys are not values paths."""
    keys = []
    for m in re.finditer(r"`([^`\n]+)`", path.read_text()):
        code = m.group(1).split(":")[0].split("=")[0].strip()
        first = code.split(".")[0]
        if re.fullmatch(r"[A-Za-z][\w<>*-]*(\.[\w<>*-]+)+", code) and (
            first in TOP or first in RELATIVE_STARTS
        ):
            keys.append(code)
    return sorted(set(keys))


def resolves_to(key: str) -> list[str]:
    """The absolute values paths a doc's key stands for: itself, or for a relative key
    every object of the schema under which it exists."""
    first = key.split(".")[0]
    if first in TOP:
        return [key] if schema_has(key) else []
    # Only objects that name the first segment (a pass-through object takes anything).
    return [f"{p}.{key}" for p, node in CONTEXTS if first in node["properties"] and schema_has(f"{p}.{key}")]


@pytest.mark.parametrize(("doc", "key"), [(p.name, k) for p in CHECKED_DOCS for k in guide_keys(p)])
def test_every_values_key_the_guides_name_exists(doc: str, key: str) -> None:
    # Secret keys (`hub.cookie-secret`, `hub.services.<name>.apiToken` of a Secret) are
    # data keys, not values; the GitOps table lists them and tests/chart/test_gitops.py
    # checks that table.
    if re.fullmatch(r"(hub|proxy)\.[a-z]+-[a-z-]+|hub\.services\.<name>\.apiToken|proxy\.token", key):
        return
    key = re.sub(r"\.\*$", "", re.sub(r"(<\w+>)\.html$", r"\1", key))
    first = key.split(".")[0]
    under = sorted(p for p, node in CONTEXTS if first in (node.get("properties") or {}))
    where = "" if first in TOP else f" under any of {', '.join(under)}"
    assert resolves_to(key), f"docs/{doc} names {key}, which the values schema does not have{where}"


def test_the_guides_name_values_keys() -> None:
    keys = guide_keys(GUIDE)
    assert len(keys) > 80
    # Relative paths are among them, and each stands for a path under systems.<name>.
    relative = [k for k in keys if k.split(".")[0] not in TOP]
    assert "status.forceCommand" in relative, relative
    assert resolves_to("status.forceCommand") == ["systems.<name>.status.forceCommand"]
    assert resolves_to("ssh.idleSecond") == []


@pytest.mark.parametrize("doc", [p.name for p in DOCS])
def test_every_relative_link_of_the_docs_resolves(doc: str) -> None:
    """[text](target) links to files and to headings: the values reference's location,
    the guide's own sections."""
    text = (ROOT / "docs" / doc).read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or not re.fullmatch(r"[\w./#-]+", target):
            continue  # a URL, or a pattern in the generated reference's text
        path, _, anchor = target.partition("#")
        dest = (ROOT / "docs" / path).resolve() if path else ROOT / "docs" / doc
        assert dest.exists(), f"docs/{doc} links to {target}: no such file"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest.read_text()), f"docs/{doc} links to {target}: no such heading"


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for h in re.findall(r"^#+ +(.+?) *$", markdown, flags=re.M):
        out.add(re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-"))
    return out
