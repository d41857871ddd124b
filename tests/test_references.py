"""Sources inside the course: every `[@key]` citation resolves to an entry of REFERENCES.md,
no citation points outside the repository, and every chapter notebook ends with its
generated `## References · 参考文献` cell.

This is the one file of the course allowed to name the notes outside it (below, in
FORBIDDEN): it checks that nothing else does.
"""

import re
import subprocess

import nbformat
import pytest

import course_config
from course_config import ROOT
from grader.references import (REFERENCES_HEADING, cited_keys, load_references,
                               references_cell_source)

REFERENCES = load_references()

# Where citations may stand: the chapters' text twins, the library, the grader, the tools,
# and the course's top-level documents (REFERENCES.md itself shows `[@key]` as an example).
CITING_FILES = sorted(
    [p for folder in ("source", "llmopt", "grader", "tools") for p in (ROOT / folder).rglob("*.py")]
    + [p for p in ROOT.glob("*.md") if p.name != "REFERENCES.md"])

# Research notes that live beside the repository, not in it: students cannot open them.
FORBIDDEN = re.compile(r"perf-anchors|shared/reference/|shared/seed/|gpu-measurements\.md|"
                       r"real-model\.md|nbgrader-facts\.md", re.IGNORECASE)

NOTEBOOKS = [(ch, nb) for ch in course_config.ACTIVE_CHAPTERS for nb in ch.notebooks]
IDS = [f"{c.slug}/{n}" for c, n in NOTEBOOKS]


def _course_text_files():
    """Tracked and new (not ignored) text files of the course, this test excepted."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    for name in listed:
        path = ROOT / name
        if name == "tests/test_references.py" or name.startswith("models/") or not path.is_file():
            continue
        try:
            yield name, path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary


def test_references_md_parses_and_every_entry_is_complete():
    assert len(REFERENCES) >= 10
    for key, ref in REFERENCES.items():
        for field in ("Authors", "Title", "Year", "Where", "Status", "Figures quoted"):
            assert ref.fields.get(field), f"REFERENCES.md entry {key!r} lacks its {field!r} field"


@pytest.mark.parametrize("path", CITING_FILES, ids=[str(p.relative_to(ROOT)) for p in CITING_FILES])
def test_every_citation_resolves(path):
    unknown = [k for k in cited_keys(path.read_text(encoding="utf-8")) if k not in REFERENCES]
    assert not unknown, (f"{path.relative_to(ROOT)} cites {', '.join('[@' + k + ']' for k in unknown)}, "
                         "which REFERENCES.md does not define: add an entry at its end")


def test_no_citation_points_outside_the_repository():
    offenders = [f"{name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
                 for name, text in _course_text_files() for m in FORBIDDEN.finditer(text)]
    assert not offenders, ("these cite notes outside the repository, which students cannot open; "
                           "cite a REFERENCES.md entry as [@key] instead:\n" + "\n".join(offenders))


def test_an_unknown_key_stops_the_build_naming_key_and_file():
    with pytest.raises(ValueError, match=r"source/chXX\.py cites \[@no-such-source\]"):
        references_cell_source(["kwon2023-vllm", "no-such-source"], "source/chXX.py", REFERENCES)


def test_citations_are_found_in_pandoc_form():
    text = "as [@kwon2023-vllm; @yu2022-orca] and [see @zhong2024-distserve, sec. 1]; a@b.com, @triton.jit"
    assert cited_keys(text) == ["kwon2023-vllm", "yu2022-orca", "zhong2024-distserve"]


@pytest.mark.parametrize("chapter, notebook", NOTEBOOKS, ids=IDS)
@pytest.mark.parametrize("folder", ["source", "release", "solutions"])
def test_every_chapter_notebook_ends_with_its_references(folder, chapter, notebook):
    path = ROOT / folder / chapter.slug / f"{notebook}.ipynb"
    nb = nbformat.read(path, as_version=4)
    last = nb.cells[-1]
    assert last.cell_type == "markdown" and last.source.startswith(REFERENCES_HEADING), (
        f"{path.relative_to(ROOT)} must end with the generated '{REFERENCES_HEADING}' cell: run "
        f"`python -m grader {'solutions' if folder == 'solutions' else 'build'} {chapter.short}`")
    twin_keys = cited_keys((ROOT / "source" / chapter.slug / f"{notebook}.py").read_text(encoding="utf-8"))
    listed = re.findall(r"^- \*\*\[@([^\]]+)\]\*\*", last.source, re.MULTILINE)
    assert listed == twin_keys, (f"{path.relative_to(ROOT)}'s references list {listed}, its source "
                                 f"cites {twin_keys}: rebuild the notebook")


def test_glossary_names_real_chapters():
    """Each term's "first in" is a chapter of the course, marked "(planned)" exactly when
    that chapter has no notebook yet; the terms the scheduling and KV chapters rely on are there."""
    rows = [line.split("|")[1:-1] for line in (ROOT / "GLOSSARY.md").read_text(encoding="utf-8").splitlines()
            if line.startswith("| ") and not line.startswith("| English")]
    active = {ch.short for ch in course_config.ACTIVE_CHAPTERS}
    known = {ch.short for ch in course_config.CHAPTERS}
    for english, chinese, first_in, _ in ((c.strip() for c in row) for row in rows):
        match = re.fullmatch(r"(ch\d\d)( \(planned\))?", first_in)
        assert match and match.group(1) in known, f"GLOSSARY: {english!r} is first in {first_in!r}, not a chapter"
        assert (match.group(1) in active) == (match.group(2) is None), (
            f"GLOSSARY: {english!r} is first in {first_in!r}: mark '(planned)' exactly the chapters "
            "without a notebook")
    chinese_terms = {row[1].strip() for row in rows}
    for term in ("写时复制", "引用计数", "队头阻塞", "静态批处理", "重计算", "饥饿", "token预算",
                 "连续内存KV缓存", "有效吞吐", "SLO达成率", "分页注意力"):
        assert term in chinese_terms, f"GLOSSARY lacks {term}"
