"""Every relative link in README.md and docs/ resolves (file and heading), and docs/index.md lists every page."""
from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import REPO

LINK = re.compile(r"(?<!!)\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^ {0,3}(```|~~~)")


def _prose(text: str, keep_code_spans: bool = False) -> list[tuple[int, str]]:
    """(line number, line) outside fenced and indented code blocks, with inline code removed unless kept."""
    out, fence, previous_blank, in_indented = [], None, True, False
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if fence:
            if match and match.group(1) == fence:
                fence = None
            continue
        if match:
            fence = match.group(1)
            continue
        if line.startswith("    ") and (previous_blank or in_indented):
            in_indented = True
            continue
        in_indented = False
        previous_blank = not line.strip()
        out.append((number, line if keep_code_spans else CODE_SPAN.sub("", line)))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for _, line in _prose(path.read_text(), keep_code_spans=True):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def broken_links(path: Path) -> list[str]:
    """Every relative link in ``path`` whose file or heading does not exist, as 'file:line: target (why)'."""
    problems = []
    for number, line in _prose(path.read_text()):
        targets = [m.group(1) for pattern in (LINK, IMAGE) for m in pattern.finditer(line)]
        ref = REFERENCE.match(line)
        if ref:
            targets.append(ref.group(1))
        for target in targets:
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            resolved = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}:{number}: {target}"
            if not resolved.exists():
                problems.append(f"{where} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                problems.append(f"{where} (no heading with that anchor)")
    return problems


def _pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def test_every_relative_link_resolves():
    problems = [problem for page in _pages() for problem in broken_links(page)]
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_the_index_lists_every_page():
    index = REPO / "docs" / "index.md"
    linked = set()
    for _, line in _prose(index.read_text()):
        for match in LINK.finditer(line):
            linked.add((index.parent / match.group(1).partition("#")[0]).resolve())
    missing = [str(p.relative_to(REPO)) for p in sorted((REPO / "docs").rglob("*.md")) if p != index and p not in linked]
    assert not missing, f"docs/index.md does not link: {', '.join(missing)}"


def test_the_checker_finds_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## Exit codes: `edgeq` and more\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md) [ok anchor](other.md#exit-codes-edgeq-and-more) [self](#page)\n"
        "[gone](missing.md) [bad anchor](other.md#nope) `[in code](missing2.md)`\n\n"
        "    [indented code](missing3.md)\n\n```\n[fenced](missing4.md)\n```\n[https](https://example.org/x)\n"
    )
    problems = broken_links(page)
    assert len(problems) == 2, problems
    assert "missing.md (no such file)" in problems[0] and "other.md#nope (no heading" in problems[1]
