"""Print (or check) the README's configuration reference: every option of every command.

python scripts/config_table.py           # print the table
python scripts/config_table.py --write   # replace the table in README.md
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from entrypoint.cli import cli

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- config-table:begin -->", "<!-- config-table:end -->"


def _commands(group: click.Group, prefix: str) -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = [(prefix, group)]
    for name in sorted(group.commands):
        command = group.commands[name]
        path = f"{prefix} {name}".strip()
        if isinstance(command, click.Group):
            found += _commands(command, path)
        else:
            found.append((path, command))
    return found


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table() -> str:
    rows = [
        "| command | option | environment variable | default | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for path, command in _commands(cli, ""):
        for param in command.params:
            if not isinstance(param, click.Option) or not param.expose_value:
                continue
            if param.is_flag and param.secondary_opts:
                option = f"`{param.opts[0]}` / `{param.secondary_opts[0]}`"
            else:
                option = ", ".join(f"`{o}`" for o in param.opts)
            env = f"`{param.envvar}`" if isinstance(param.envvar, str) else "-"
            default = param.default
            simple = isinstance(default, (str, int, float)) and default != ""
            default_text = f"`{default}`" if simple else "-"
            rows.append(
                f"| `vault-entrypoint{(' ' + path) if path else ''}` | {option} | {env} | "
                f"{default_text} | {_cell(param.help or '')} |"
            )
    return "\n".join(rows)


def readme_table(text: str) -> str:
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[start:end].strip()


def differences(readme_text: str) -> tuple[set[str], set[str]]:
    """Rows the README lacks, and rows it has that the CLI does not."""
    readme = set(readme_table(readme_text).splitlines())
    generated = set(table().splitlines())
    return generated - readme, readme - generated


def main() -> None:
    generated = table()
    if "--write" in sys.argv:
        text = README.read_text()
        start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
        README.write_text(text[:start] + "\n" + generated + "\n" + text[end:])
    else:
        print(generated)


if __name__ == "__main__":
    main()
