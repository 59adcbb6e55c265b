"""Docs served before login: the Markdown subset renders the real docs, escapes the rest."""

from __future__ import annotations

from pathlib import Path

from hpchub.console.docs import render_markdown

REPO = Path(__file__).resolve().parents[2]


def test_user_guide_renders_with_its_sections():
    html = render_markdown((REPO / "docs" / "user-guide.md").read_text())
    assert '<h1 id="user-guide">User guide</h1>' in html
    for section in (
        "Choosing a service level",
        "Custom kernels",
        "User start-up scripts",
        "Previous environment versions",
        "Slurm from a notebook",
    ):
        assert f">{section}</h2>" in html
    assert "<table" in html and "<pre><code" in html


def test_links_between_docs_point_at_the_hub_and_others_go_nowhere():
    html = render_markdown("See [the log](changelog.md) and [ops](operator-guide.md) and [x](https://x.org).")
    assert '<a href="/hub/docs/changelog">the log</a>' in html
    assert '<a href="#">ops</a>' in html
    assert '<a href="https://x.org">x</a>' in html


def test_html_in_markdown_is_escaped():
    html = render_markdown("<script>alert(1)</script>\n\n[a](javascript:alert(1))\n\n`<b>`")
    assert "<script>" not in html
    assert 'href="#"' in html
    assert "<code>&lt;b&gt;</code>" in html


def test_lists_code_and_emphasis():
    html = render_markdown("- **bold** item\n- *it* `c`\n\n1. one\n2. two\n\n```bash\necho <hi>\n```")
    assert "<ul><li><strong>bold</strong> item</li><li><em>it</em> <code>c</code></li></ul>" in html
    assert "<ol><li>one</li><li>two</li></ol>" in html
    assert '<pre><code class="language-bash">echo &lt;hi&gt;</code></pre>' in html
