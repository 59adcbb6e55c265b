"""The user guide and changelog, served by the hub to anyone -- no login needed.

Users look for help before they can log in (the white paper's complaint about docs behind
the login). The hub renders ``docs/user-guide.md`` and ``docs/changelog.md`` with a small
Markdown subset (headings, paragraphs, lists, fenced code, tables, links, inline code,
bold, italics) so the hub image needs no extra dependency.

Where the docs are: ``$HPCHUB_DOCS_DIR``, else ``/usr/local/share/hpchub/docs`` (the hub
image), else the repository's ``docs/`` (development checkout).
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

from jupyterhub.handlers import BaseHandler
from tornado import web

DOCS = {"user-guide": "User guide", "changelog": "Changelog"}
IMAGE_DOCS_DIR = Path("/usr/local/share/hpchub/docs")


def docs_dir() -> Path:
    env = os.environ.get("HPCHUB_DOCS_DIR")
    if env:
        return Path(env)
    if IMAGE_DOCS_DIR.is_dir():
        return IMAGE_DOCS_DIR
    return Path(__file__).resolve().parents[4] / "docs"


_INLINE = [
    (re.compile(r"\*\*(.+?)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])"), r"<em>\1</em>"),
]
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def _link_target(url: str, base: str) -> str:
    if re.match(r"^[a-z][a-z0-9+.-]*:", url, re.IGNORECASE) or url.startswith(("#", "/")):
        if url.lower().startswith("javascript:"):
            return "#"
        return url
    name, _, anchor = url.partition("#")
    stem = Path(name).name.removesuffix(".md")
    if stem in DOCS:
        return base + stem + (f"#{anchor}" if anchor else "")
    return "#"  # not served by the hub (e.g. operator docs in the repository)


def _inline(text: str, base: str) -> str:
    # code spans first: their content is literal
    parts = re.split(r"(`[^`]+`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
            continue
        s = html.escape(part, quote=False)
        s = _LINK.sub(
            lambda m: (
                f'<a href="{html.escape(_link_target(html.unescape(m.group(2)), base))}">{m.group(1)}</a>'
            ),
            s,
        )
        for pattern, repl in _INLINE:
            s = pattern.sub(repl, s)
        out.append(s)
    return "".join(out)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def render_markdown(source: str, base: str = "/hub/docs/") -> str:
    """Markdown subset -> HTML. Everything from the file is escaped; only the subset's
    own tags are produced."""
    lines = source.splitlines()
    out: list[str] = []
    para: list[str] = []
    i = 0

    def flush() -> None:
        if para:
            out.append("<p>" + _inline(" ".join(para), base) + "</p>")
            para.clear()

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            flush()
            lang = stripped[3:].strip()
            code: list[str] = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                code.append(lines[i])
                i += 1
            cls = f' class="language-{html.escape(lang)}"' if lang else ""
            out.append(f"<pre><code{cls}>" + html.escape("\n".join(code)) + "</code></pre>")
            i += 1
            continue
        m = re.match(r"^(#{1,6})\s+(.*)$", stripped)
        if m:
            flush()
            level, text = len(m.group(1)), m.group(2).strip()
            out.append(f'<h{level} id="{_slug(text)}">{_inline(text, base)}</h{level}>')
            i += 1
            continue
        if re.match(r"^([-*]|\d+\.)\s+", stripped):
            flush()
            ordered = bool(re.match(r"^\d+\.", stripped))
            tag = "ol" if ordered else "ul"
            items: list[str] = []
            while i < len(lines) and lines[i].strip():
                s = lines[i].strip()
                mm = re.match(r"^([-*]|\d+\.)\s+(.*)$", s)
                if mm:
                    items.append(mm.group(2))
                elif items:
                    items[-1] += " " + s
                i += 1
            out.append(f"<{tag}>" + "".join(f"<li>{_inline(it, base)}</li>" for it in items) + f"</{tag}>")
            continue
        if (
            stripped.startswith("|")
            and i + 1 < len(lines)
            and re.match(r"^\|?[\s:|-]+\|?$", lines[i + 1].strip())
        ):
            flush()

            def cells(row: str) -> list[str]:
                return [c.strip() for c in row.strip().strip("|").split("|")]

            head = cells(stripped)
            i += 2
            body = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                body.append(cells(lines[i]))
                i += 1
            t = ["<table class='table table-sm'><thead><tr>"]
            t += [f"<th scope='col'>{_inline(c, base)}</th>" for c in head]
            t.append("</tr></thead><tbody>")
            for row in body:
                t.append("<tr>" + "".join(f"<td>{_inline(c, base)}</td>" for c in row) + "</tr>")
            t.append("</tbody></table>")
            out.append("".join(t))
            continue
        if stripped.startswith(">"):
            flush()
            quote: list[str] = []
            while i < len(lines) and lines[i].strip().startswith(">"):
                quote.append(lines[i].strip()[1:].strip())
                i += 1
            out.append("<blockquote><p>" + _inline(" ".join(quote), base) + "</p></blockquote>")
            continue
        if not stripped:
            flush()
        else:
            para.append(stripped)
        i += 1
    flush()
    return "\n".join(out)


_cache: dict[Path, tuple[float, str]] = {}


def rendered(name: str, base: str) -> str:
    path = docs_dir() / f"{name}.md"
    mtime = path.stat().st_mtime
    hit = _cache.get(path)
    if hit and hit[0] == mtime:
        return hit[1]
    body = render_markdown(path.read_text(encoding="utf-8"), base)
    _cache[path] = (mtime, body)
    return body


class DocsHandler(BaseHandler):
    """/hub/docs/ (index), /hub/docs/user-guide, /hub/docs/changelog -- no login needed."""

    async def get(self, name: str = "") -> None:
        name = name.strip("/")
        base = self.hub.base_url + "docs/"
        if not name:
            docs = [
                (base + key, title) for key, title in DOCS.items() if (docs_dir() / f"{key}.md").is_file()
            ]
            html_out = await self.render_template(
                "docs.html", doc_title="Documentation", doc_index=docs, doc_html=""
            )
            self.finish(html_out)
            return
        if name not in DOCS:
            raise web.HTTPError(404, f"There is no document called {name!r}.")
        try:
            body = rendered(name, base)
        except FileNotFoundError:
            raise web.HTTPError(404, f"The {DOCS[name].lower()} is not installed on this hub.") from None
        self.set_header("Cache-Control", "no-cache")
        html_out = await self.render_template("docs.html", doc_title=DOCS[name], doc_index=[], doc_html=body)
        self.finish(html_out)
