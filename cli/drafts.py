"""`draft add|finish|ls|rm`: several writers feed one draft; one final step commits it as one version."""

import click

from artifactfs import drafts
from artifactfs.client import Client
from artifactfs.config import format_size
from artifactfs.errors import UsageError
from artifactfs.ingest import walk_tree

from .options import print_commit, reference_option, version_args, version_options, with_options


@click.group("draft")
def draft():
    """Build one version from several writers (machines, jobs)."""


@draft.command("add")
@click.argument("name")
@click.argument("draft_name", metavar="DRAFT")
@click.option("--dir", "directory", type=click.Path(file_okay=False), help="Directory whose files to add.")
@click.option("--prefix", help="Put the files under this path.")
@reference_option
@click.option("--type", "type_", default="dataset", show_default=True, help="Artifact type.")
@click.option("--writer", help="Writer id (default HOST-PID); each writer writes only its own parts.")
@click.pass_obj
def draft_add(client: Client, name, draft_name, directory, prefix, references, type_, writer):
    """Add files to DRAFT of artifact NAME (uploaded now, committed at `draft finish`)."""
    if not directory and not references:
        raise UsageError("nothing to add: give --dir PATH and/or --reference URI")
    files, tree = walk_tree(directory, prefix) if directory else ([], [])
    refs = client.references.resolve_specs(references)
    entries = drafts.add_files(client.repo, client.artifact_name(name), draft_name, type_, files, [*tree, *refs],
                               writer)
    click.echo(f"added {len(entries)} files ({format_size(sum(e.size for e in entries))}) to draft {draft_name}")


@draft.command("finish")
@click.argument("name")
@click.argument("draft_name", metavar="DRAFT")
@with_options(version_options)
@click.pass_obj
def draft_finish(client: Client, name, draft_name, as_json, **version):
    """Commit everything added to DRAFT as one version; fails naming a path two writers gave different content."""
    result = drafts.finish(client.repo, client.artifact_name(name), draft_name, **version_args(**version))
    print_commit(result, as_json, source=f"draft {draft_name}")


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
