"""The documentation tells the truth about the repository: the README's documentation list names
every doc, relative links and repository paths resolve, no doc cites files outside the
repository except as a note on the project's test data, and every `caffezoo ...` command line in
a code block is accepted by the real parser (no option that does not exist, no old spelling)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from caffezoo import cli

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [REPO / "README.md", *DOCS]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
REPO_PATH = re.compile(r"(?<![\w/.~-])((?:caffezoo|tests|scripts|benchmarks|docs|prototxt)/"
                       r"[\w./-]*\w)")


def _ids(paths):
    return [p.name for p in paths]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", page.read_text(), re.M)}


def test_readme_documentation_list_names_every_doc():
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Documentation\n", 1)[1].split("\n## ", 1)[0]
    listed = {Path(link).name for link in LINK.findall(section)}
    missing = [d.name for d in DOCS if d.name not in listed]
    assert not missing, f"README's documentation list lacks {missing}"


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_relative_links_and_anchors_resolve(page):
    broken = []
    for link in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", link):
            continue  # a URL
        target, _, anchor = link.partition("#")
        path = (page.parent / target) if target else page
        if not path.exists():
            broken.append(link)
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(link)
    assert not broken, f"{page.name}: broken links {broken}"


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_repository_paths_named_in_docs_exist(page):
    missing = sorted({p for p in REPO_PATH.findall(page.read_text())
                      if "*" not in p and not (REPO / p).exists()})
    assert not missing, f"{page.name} names files that are not in the repository: {missing}"


def _chunks(text: str) -> list[str]:
    """Blank-line separated chunks; a fenced code block is one chunk, blank lines and all."""
    chunks, current, fenced = [], [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not line.strip() and not fenced:
            if current:
                chunks.append("\n".join(current))
            current = []
        else:
            current.append(line)
    if current:
        chunks.append("\n".join(current))
    return chunks


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_no_doc_cites_files_outside_the_repository(page):
    text = page.read_text()
    for banned in ("FACTS", "DESIGN.md", "shared/docs", "/work/", "/root/"):
        assert banned not in text, f"{page.name} cites {banned!r}, outside the repository"
    chunks = _chunks(text)
    for i, chunk in enumerate(chunks):
        if "../shared" in chunk:
            context = (chunks[i - 1] if i else "") + "\n" + chunk
            assert "test data" in context, (
                f"{page.name}: ../shared is outside the repository; name it only as the "
                f"project's test data:\n{chunk}")


def _command_lines(page: Path) -> list[str]:
    lines = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", page.read_text(), re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("caffezoo "):
                lines.append(line)
    return lines


def _placeholder(token: str) -> bool:
    # OUT, KIND:SPEC, M, [--input-size N], ...: a synopsis or a template, not a command
    return bool(re.fullmatch(r"[A-Z][A-Z_:.,|-]*", token)) or token.startswith("[") or \
        "..." in token


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_command_lines_in_docs_parse(page, capsys):
    checked = 0
    for line in _command_lines(page):
        argv = shlex.split(line, comments=True)[1:]
        if not argv or argv[0] not in cli.COMMANDS or any(_placeholder(t) for t in argv):
            continue  # printed output (`caffezoo info: error: ...`) or a synopsis
        try:
            cli.build_parser(argv).parse_args(argv)
        except SystemExit:
            pytest.fail(f"{page.name}: `{line}` is not accepted by caffezoo's parser")
        note = capsys.readouterr().err
        assert "deprecated" not in note, f"{page.name}: `{line}` uses an old spelling: {note}"
        checked += 1
    if page.name in ("README.md", "evaluation.md", "conversion.md", "zoo.md"):
        assert checked, f"{page.name}: no command line was checked"
