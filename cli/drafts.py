"""`draft add|finish|ls|rm`: several writers feed one draft; one final step commits it as one version."""

import click

from artifactfs import drafts
from artifactfs.client import Client
from artifactfs.config import format_size
from artifactfs.errors import UsageError
from artifactfs.ingest import walk_directory

from .output import emit_json


@click.group("draft")
def draft():
    """Build one version from several writers (machines, jobs)."""


@draft.command("add")
@click.argument("name")
@click.argument("draft_name", metavar="DRAFT")
@click.option("--dir", "directory", type=click.Path(file_okay=False), help="Directory whose files to add.")
@click.option("--prefix", help="Put the files under this path.")
@click.option("--reference", "references", multiple=True, metavar="URI[=NAME]", help="Add a reference.")
@click.option("--type", "type_", default="dataset", show_default=True, help="Artifact type.")
@click.option("--writer", help="Writer id (default HOST-PID); each writer writes only its own parts.")
@click.pass_obj
def draft_add(client: Client, name, draft_name, directory, prefix, references, type_, writer):
    """Add files to DRAFT of artifact NAME (uploaded now, committed at `draft finish`)."""
    if not directory and not references:
        raise UsageError("nothing to add: give --dir PATH and/or --reference URI")
    files = walk_directory(directory, prefix) if directory else []
    refs = []
    for spec in references:
        uri, _, entry_name = spec.rpartition("=") if "=" in spec else (spec, "", "")
        refs += client.references.resolve(uri, entry_name or None)
    entries = drafts.add_files(client.repo, client.artifact_name(name), draft_name, type_, files, refs, writer)
    click.echo(f"added {len(entries)} files ({format_size(sum(e.size for e in entries))}) to draft {draft_name}")


@draft.command("finish")
@click.argument("name")
@click.argument("draft_name", metavar="DRAFT")
@click.option("-m", "--message", "description", help="Description of the version.")
@click.option("--alias", "aliases", multiple=True, help="Alias to point at the version (repeatable).")
@click.option("--metadata", "metadata_pairs", multiple=True, metavar="K=V", help="Metadata.")
@click.option("--run", help="Id of the run producing this version.")
@click.option("--input", "inputs", multiple=True, metavar="REF", help="A version the run used (repeatable).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def draft_finish(client: Client, name, draft_name, description, aliases, metadata_pairs, run, inputs, as_json):
    """Commit everything added to DRAFT as one version; fails naming a path two writers gave different content."""
    from .main import parse_metadata

    result = drafts.finish(client.repo, client.artifact_name(name), draft_name, description=description,
                           metadata=parse_metadata(metadata_pairs, None), aliases=aliases, run=run,
                           inputs=list(inputs))
    record = result.record
    if as_json:
        emit_json({**record.to_json(), "created": result.created})
    elif result.created:
        click.echo(f"{record.ref} committed from draft {draft_name}: {record.file_count} files, "
                   f"{format_size(record.size)}")
    else:
        click.echo(f"unchanged: draft {draft_name} equals {record.ref}; no new version")


@draft.command("ls")
@click.argument("name")
@click.pass_obj
def draft_ls(client: Client, name):
    """List the drafts of artifact NAME."""
    for d in drafts.list_drafts(client.repo, client.artifact_name(name)):
        click.echo(f"{d['draft']}\t{d['parts']} parts" + ("\tbeing finished" if d["sealed"] else ""))


@draft.command("rm")
@click.argument("name")
@click.argument("draft_name", metavar="DRAFT")
@click.pass_obj
def draft_rm(client: Client, name, draft_name):
    """Abandon a draft (gc reclaims its blobs)."""
    drafts.remove(client.repo, client.artifact_name(name), draft_name)
    click.echo(f"removed draft {draft_name}")


def register(cli) -> None:
    cli.add_command(draft)
