"""Check the two rules that keep design intent apart from runbooks.

python scripts/check_docs.py   # exit 1 and one line per violation

1. ``docs/roadmap/`` is design intent only: no link to, and no mention of, a setup runbook
   (``docs/setup/`` or any of its file names), and no commands to run.
2. Every link from ``docs/setup/`` to the roadmap is an explicit relative path
   ``../roadmap/<file>.md`` (an ``#anchor`` may follow) to a file that exists.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"

# Inline links [text](target), images, and reference definitions "[id]: target".
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
_AUTOLINK = re.compile(r"<((?:https?|file)://[^>]+)>")
_GOOD_ROADMAP_LINK = re.compile(r"^\.\./roadmap/([A-Za-z0-9][A-Za-z0-9._-]*\.md)(#[\w.-]+)?$")
_ROADMAP_MENTION = re.compile(r"(?<![\w./-])(?:[\w./-]*/)?roadmap/[A-Za-z0-9._-]+\.md")
_FENCE = re.compile(
    r"^([ \t]*)(```+|~~~+)[ \t]*([\w+-]*)[^\n]*\n(.*?)^\1\2[ \t]*$", re.DOTALL | re.MULTILINE
)
_INLINE_CODE = re.compile(r"(`+)(.+?)\1")
_SHELL_LANGS = {"sh", "bash", "shell", "console", "zsh", "shell-session", "sh-session", "ps"}
# Words that start a command an operator would type.
_COMMAND_WORDS = {
    "apt",
    "apt-get",
    "bao",
    "cat",
    "cd",
    "chmod",
    "cp",
    "curl",
    "docker",
    "echo",
    "export",
    "git",
    "kill",
    "ls",
    "make",
    "mkdir",
    "openssl",
    "pip",
    "python",
    "python3",
    "rm",
    "sh",
    "ssh",
    "sudo",
    "systemctl",
    "vault",
    "vault-entrypoint",
}


@dataclass(frozen=True)
class Violation:
    path: Path
    line: int
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: [{self.rule}] {self.detail}"


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def links(text: str) -> list[tuple[int, str]]:
    """Every link target in a Markdown text, with the line it is on."""
    found = [(m.start(1), m.group(1)) for m in _INLINE_LINK.finditer(text)]
    found += [(m.start(1), m.group(1)) for m in _REF_DEF.finditer(text)]
    found += [(m.start(1), m.group(1)) for m in _AUTOLINK.finditer(text)]
    return sorted((_line_of(text, offset), target) for offset, target in found)


def _looks_like_command(line: str) -> bool:
    words = line.strip().lstrip("$#> ").split()
    if not words:
        return False
    first = words[0]
    env_prefix = "=" in first and len(words) > 1 and words[1] in _COMMAND_WORDS
    return first in _COMMAND_WORDS or first.startswith("./") or first.endswith(".sh") or env_prefix


def commands(text: str) -> list[tuple[int, str]]:
    """Shell snippets: shell code blocks, command lines in any code block, command code spans."""
    found: list[tuple[int, str]] = []
    for block in _FENCE.finditer(text):
        lang, body = block.group(3).lower(), block.group(4)
        first_line = _line_of(text, block.start(4))
        if lang in _SHELL_LANGS:
            found.append((_line_of(text, block.start()), f"a {lang} code block"))
            continue
        for number, line in enumerate(body.splitlines(), start=first_line):
            if line.lstrip().startswith("$ ") or _looks_like_command(line):
                found.append((number, line.strip()[:80]))
    outside = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for span in _INLINE_CODE.finditer(outside):
        code = span.group(2).strip()
        if _looks_like_command(code) or code.endswith(".sh"):
            found.append((_line_of(outside, span.start()), code[:80]))
    for number, line in enumerate(outside.splitlines(), start=1):
        if line.startswith("$ "):
            found.append((number, line[:80]))
    return found


def _setup_names(docs: Path) -> list[str]:
    setup = docs / "setup"
    return sorted(p.name for p in setup.glob("*.md")) if setup.is_dir() else []


def check_roadmap(docs: Path) -> list[Violation]:
    """Rule 1: roadmap files neither link to nor name a setup runbook, and hold no commands."""
    violations: list[Violation] = []
    names = _setup_names(docs)
    for path in sorted((docs / "roadmap").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        for line, target in links(text):
            resolved = (path.parent / target.split("#", 1)[0]).resolve()
            if "setup" in target.lower() or resolved.is_relative_to((docs / "setup").resolve()):
                violations.append(Violation(path, line, "roadmap-links-setup", target))
        for pattern in [r"\bdocs/setup\b", r"(?<![\w-])setup/", *map(re.escape, names)]:
            for match in re.finditer(pattern, text):
                violations.append(
                    Violation(path, _line_of(text, match.start()), "roadmap-names-setup", match[0])
                )
        for line, snippet in commands(text):
            violations.append(Violation(path, line, "roadmap-has-command", snippet))
    return sorted(set(violations), key=lambda v: (str(v.path), v.line, v.rule, v.detail))


def check_setup(docs: Path) -> list[Violation]:
    """Rule 2: setup-to-roadmap links are ``../roadmap/<file>.md`` to a file that exists."""
    violations: list[Violation] = []
    roadmap = docs / "roadmap"
    for path in sorted((docs / "setup").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        linked_lines: set[tuple[int, str]] = set()
        for line, target in links(text):
            if "roadmap" not in target.lower():
                continue
            linked_lines.add((line, target))
            good = _GOOD_ROADMAP_LINK.match(target)
            if good is None:
                violations.append(Violation(path, line, "setup-link-not-explicit", target))
            elif not (roadmap / good.group(1)).is_file():
                violations.append(Violation(path, line, "setup-link-missing-file", target))
        # A roadmap file named in plain text instead of linked is a link in disguise.
        for match in _ROADMAP_MENTION.finditer(text):
            line = _line_of(text, match.start())
            if not any(match[0] in target for ln, target in linked_lines if ln == line):
                violations.append(Violation(path, line, "setup-link-not-explicit", match[0]))
    return violations


def check(docs: Path = DOCS) -> list[Violation]:
    return check_roadmap(docs) + check_setup(docs)


def main() -> int:
    violations = check(Path(sys.argv[1]) if len(sys.argv) > 1 else DOCS)
    for violation in violations:
        print(violation)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
