"""What several commands share: their options, metadata parsing, and how a commit's result is printed."""

import json

import click

from artifactfs.config import format_size
from artifactfs.errors import LocalIOError, UsageError
from artifactfs.records import CommitResult, VersionRecord

from .output import emit_json


def with_options(options):
    def wrap(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn
    return wrap


metadata_options = [
    click.option("--metadata", "metadata_pairs", multiple=True, metavar="K=V",
                 help="Metadata (value parsed as JSON if it can be)."),
    click.option("--metadata-file", type=click.Path(dir_okay=False), help="A JSON object file of metadata."),
]

# what every way of making a version takes (commit, commit of a stage, draft finish)
version_options = [
    click.option("-m", "--message", "description", help="Description of the version."),
    click.option("--alias", "aliases", multiple=True, help="Alias to point at the version (repeatable)."),
    *metadata_options,
    click.option("--run", help="Id of the run producing this version (lineage)."),
    click.option("--input", "inputs", multiple=True, metavar="REF", help="A version the run used (repeatable)."),
    click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
]

reference_option = click.option("--reference", "references", multiple=True, metavar="URI[=NAME]",
                                help="Track an s3://, http(s):// or file:// URI without copying it (repeatable).")


def version_args(description, aliases, metadata_pairs, metadata_file, run, inputs) -> dict:
    """The library's commit arguments from `version_options`."""
    return dict(description=description, aliases=list(aliases), metadata=parse_metadata(metadata_pairs, metadata_file),
                run=run, inputs=list(inputs))


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def parse_metadata(pairs, metadata_file) -> dict | None:
    if not pairs and not metadata_file:
        return None
    metadata = {}
    if metadata_file:
        try:
            with open(metadata_file, "rb") as f:
                metadata = json.load(f, parse_constant=_no_constant)
        except OSError as exc:
            raise LocalIOError(f"cannot read {metadata_file}: {exc.strerror}") from None
        except ValueError as exc:
            raise UsageError(f"{metadata_file} is not valid JSON: {exc}") from None
        if not isinstance(metadata, dict):
            raise UsageError(f"{metadata_file} must hold a JSON object")
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"invalid metadata {pair!r}: expected KEY=VALUE")
        try:
            metadata[key] = json.loads(value, parse_constant=_no_constant)  # numbers, booleans, lists stay typed
        except ValueError:  # NaN and Infinity too: they stay the text they were
            metadata[key] = value
    return metadata


def record_summary(record: VersionRecord, aliases: list[str] | None = None) -> dict:
    obj = record.to_json()
    if aliases is not None:
        obj["aliases"] = aliases
    return obj


def print_commit(result: CommitResult, as_json: bool, source: str = "", **extra) -> None:
    """A commit's outcome: the new version, or that the content equals an existing one. `source` says
    where the content came from ("draft d1"); `extra` goes into the JSON."""
    record = result.record
    if as_json:
        emit_json({**record_summary(record), "created": result.created, "aliases": result.aliases,
                   **({} if result.created else {"latest_was": result.latest_was}), **extra})
    elif result.created:
        click.echo(f"{record.ref} committed{f' from {source}' if source else ''}: {record.counts()}, "
                   f"{format_size(record.size)}, digest {record.digest}")
    else:  # the content was logged again: latest (and the aliases asked for) moved to its version
        was = result.latest_was
        moved = f"latest -> v{record.version}" if was != record.version else f"latest stays v{record.version}"
        click.echo(f"{source or 'content'} equals v{record.version}: {moved}"
                   f"{f' (was v{was})' if was is not None and was != record.version else ''}"
                   f"{''.join(f', {a} -> v{record.version}' for a in result.aliases)}; no new version "
                   f"({record.ref}, digest {record.digest})")
