"""Write docs/CLI.md from the CLI itself (every command's --help), or check that it is current.

    .venv/bin/python scripts/cli_doc.py          # rewrite docs/CLI.md
    .venv/bin/python scripts/cli_doc.py --check  # exit 1 if docs/CLI.md differs from --help
"""

import os
import sys

import click

from artifactfs_cli.main import cli

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "CLI.md")


def commands(group: click.Group, path: list[str]):
    """(command path, command) for the group and everything below it, in name order."""
    yield path, group
    for name in sorted(group.list_commands(click.Context(group))):
        sub = group.get_command(click.Context(group), name)
        if isinstance(sub, click.Group):
            yield from commands(sub, [*path, name])
        else:
            yield [*path, name], sub


def render() -> str:
    out = ["# Command reference", "",
           "Generated from `artifactfs ... --help` by `scripts/cli_doc.py`; a test checks it is current.", ""]
    for path, command in commands(cli, ["artifactfs"]):
        with click.Context(command, info_name=" ".join(path), terminal_width=100, max_content_width=100) as ctx:
            text = command.get_help(ctx)
        out += [f"## {' '.join(path)}", "", "```", text.rstrip(), "```", ""]
    return "\n".join(out)


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        with open(DOC) as f:
            sys.exit(0 if f.read() == text else 1)
    with open(DOC, "w") as f:
        f.write(text)
