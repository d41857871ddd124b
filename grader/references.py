"""The course's bibliography: REFERENCES.md parsed, `[@key]` citations found, and the
`## References · 参考文献` cell that ends each chapter notebook.

One mechanism: a chapter's reference list is generated from the keys its notebook cites,
never kept by hand. A key that REFERENCES.md does not define stops the build.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from course_config import ROOT

REFERENCES_PATH = ROOT / "REFERENCES.md"
REFERENCES_HEADING = "## References · 参考文献"

# An entry: a level-3 heading holding the key in backticks, then "- **Field:** text" lines
# (wrapped lines are indented).
_ENTRY = re.compile(r"^### `([^`]+)`\s*$", re.MULTILINE)
_FIELD = re.compile(r"^- \*\*([^*:]+):\*\*\s*(.*)$")
KEY_PATTERN = r"[a-z0-9][a-z0-9-]*[a-z0-9]"
# A pandoc citation group: square brackets holding one or more @keys (`[@a]`, `[@a; @b]`,
# `[see @a, sec. 2]`). The key may not follow a word character or a dot (an e-mail address).
# Inside an inline code span a citation is an example, not a citation.
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_GROUP = re.compile(r"\[([^\[\]\n]*?(?<![\w.])@[^\[\]\n]*)\]")
_KEY_IN_GROUP = re.compile(r"(?<![\w.])@([A-Za-z0-9][\w-]*[A-Za-z0-9]|[A-Za-z0-9])")


class UnknownCitationError(ValueError):
    """A `[@key]` that REFERENCES.md does not define."""


@dataclass(frozen=True)
class Reference:
    key: str
    fields: dict[str, str]  # "Authors", "Title", "Year", "Where", "Status", ...

    def line(self) -> str:
        """One markdown line for a chapter's reference list."""
        authors, title = self.fields.get("Authors", ""), self.fields.get("Title", "")
        year, where = self.fields.get("Year", ""), self.fields.get("Where", "")
        parts = [authors.rstrip("."), f"*{title.rstrip('.')}*", year.rstrip("."), where.rstrip(".")]
        return f"- **[@{self.key}]** " + ". ".join(p for p in parts if p) + "."


def load_references(path: Path = REFERENCES_PATH) -> dict[str, Reference]:
    """Every entry of REFERENCES.md by key. Raises ValueError on a malformed or repeated key."""
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
    headings = list(_ENTRY.finditer(text))
    references: dict[str, Reference] = {}
    for i, heading in enumerate(headings):
        key = heading.group(1)
        if not re.fullmatch(KEY_PATTERN, key):
            raise ValueError(f"{path.name}: key {key!r} must be lowercase letters, digits and '-'")
        if key in references:
            raise ValueError(f"{path.name}: key {key!r} is defined twice")
        end = headings[i + 1].start() if i + 1 < len(headings) else len(text)
        body = text[heading.end():end].split("\n---", 1)[0]
        fields: dict[str, str] = {}
        current = None
        for raw in body.splitlines():
            match = _FIELD.match(raw)
            if match:
                current = match.group(1).strip()
                fields[current] = match.group(2).strip()
            elif current and raw.startswith("  ") and raw.strip():
                fields[current] = (fields[current] + " " + raw.strip()).strip()
            elif not raw.strip():
                continue
            else:
                current = None
        missing = [f for f in ("Authors", "Title", "Year", "Where", "Status") if not fields.get(f)]
        if missing:
            raise ValueError(f"{path.name}: entry {key!r} lacks {', '.join(missing)}")
        references[key] = Reference(key, fields)
    return references


def cited_keys(text: str) -> list[str]:
    """The citations in `text`, in order of first appearance, each once (code spans skipped)."""
    keys: list[str] = []
    for group in _GROUP.finditer(_CODE_SPAN.sub("", text)):
        for key in _KEY_IN_GROUP.findall(group.group(1)):
            if key not in keys:
                keys.append(key)
    return keys


def check_known(keys: list[str], where: str, references: dict[str, Reference]) -> None:
    unknown = [k for k in keys if k not in references]
    if unknown:
        names = ", ".join(f"[@{k}]" for k in unknown)
        raise UnknownCitationError(
            f"{where} cites {names}, which REFERENCES.md does not define: add an entry at the "
            "end of REFERENCES.md (its section 'How to add an entry' shows the format)")


def references_cell_source(keys: list[str], where: str,
                           references: dict[str, Reference] | None = None) -> str:
    """Markdown of the references cell for a notebook citing `keys` (from file `where`)."""
    references = load_references() if references is None else references
    check_known(keys, where, references)
    lines = [REFERENCES_HEADING, ""]
    if keys:
        lines += ["The sources this chapter cites as `[@key]`. Each full entry in the course's "
                  "`REFERENCES.md` gives the figures quoted and where in the source each comes from.",
                  ""]
        lines += [references[k].line() for k in keys]
    else:
        lines.append("This chapter cites no outside source.")
    return "\n".join(lines)
