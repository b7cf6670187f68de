"""`artifactfs` commands. Each one: options, one library call, printing."""

import json
import sys

import click

from artifactfs import lifecycle
from artifactfs.client import Client
from artifactfs.config import format_size
from artifactfs.errors import EXIT_CODES, CorruptData, LocalIOError, UsageError
from artifactfs.manifest import Entry
from artifactfs.records import VersionRecord

from . import drafts as drafts_cmds
from . import lifecycle as lifecycle_cmds
from . import lineage as lineage_cmds
from . import mount_cmds, stage_cmds, ui_cmd, watch_cmd
from .options import (
    metadata_options,
    parse_metadata,
    print_commit,
    record_summary,
    reference_option,
    version_args,
    version_options,
    with_options,
)
from .output import Progress, emit_json, run_guarded, ttl_state


class GuardedGroup(click.Group):
    """Runs every command inside the error boundary, so no command can print a traceback, and says a
    usage error (a missing argument, an option's bad value) in one line, as every other error."""

    def invoke(self, ctx):
        return run_guarded(lambda: super(GuardedGroup, self).invoke(ctx))

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            click.echo(f"artifactfs: error: {' '.join(exc.format_message().split())}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("artifactfs: interrupted", err=True)
            sys.exit(130)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        sys.exit(0)


EPILOG = "Exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items())


@click.group(cls=GuardedGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
# The environment and the config file are read by config.load_settings, which names the source of a bad value.
@click.option("--store", help="Store: a directory or s3://bucket/prefix [env ARTIFACTFS_STORE].")
@click.option("--endpoint-url", help="S3 endpoint (SeaweedFS, MinIO, Ceph) [env AWS_ENDPOINT_URL].")
@click.option("--cache-dir", help="Local cache directory [env ARTIFACTFS_CACHE_DIR].")
@click.option("--cache-size", help="Cache bound, e.g. 20G [env ARTIFACTFS_CACHE_SIZE].")
@click.option("--timeout", help="Store request timeout, seconds [env ARTIFACTFS_TIMEOUT].")
@click.version_option(package_name="artifactfs")
@click.pass_context
def cli(ctx, store, endpoint_url, cache_dir, cache_size, timeout):
    """Versioned artifacts (datasets, models) that you mount as plain folders."""
    ctx.obj = Client(store=store, endpoint_url=endpoint_url, cache_dir=cache_dir, cache_size=cache_size,
                     timeout=timeout)
    ctx.call_on_close(ctx.obj.close)


@cli.command()
@click.argument("ref", metavar="REF|MOUNTPOINT", required=False)
@click.option("--stage", "stage_id", metavar="ID", help="Commit stage ID from its journal (its daemon is not running).")
@click.option("--require-base", is_flag=True, help="Staging: fail if latest moved since the stage's base.")
@click.option("--dir", "directory", type=click.Path(file_okay=False), help="Directory to commit.")
@click.option("--type", "type_", default="dataset", show_default=True, help="Artifact type (fixed at creation).")
@click.option("--prefix", help="Put the files under this path in the artifact.")
@reference_option
@with_options(version_options)
@click.pass_obj
def commit(client: Client, ref, stage_id, require_base, directory, type_, prefix, references, as_json, **version):
    """Commit DIR (and --reference URIs) as the next version of REF (entity/project/name), or commit the
    staging mount MOUNTPOINT (or --stage ID) as the next version of its artifact."""
    args = version_args(**version)
    if stage_id or (not directory and not references and stage_cmds.is_stage_target(ref)):
        return stage_cmds.commit_stage(client, ref, stage_id, require_base, as_json, args)
    if ref is None:
        raise UsageError("give REF with --dir/--reference, a staging MOUNTPOINT, or --stage ID")
    if not directory and not references:
        raise UsageError("nothing to commit: give --dir PATH and/or --reference URI")
    with Progress.bar("uploading") as progress:
        result = client.commit_dir(directory, ref, type_, prefix, progress, references, **args)
    print_commit(result, as_json)


@cli.command("ls")
@click.argument("path", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def ls_cmd(client: Client, path, as_json):
    """List entities, projects of ENTITY, artifacts of ENTITY/PROJECT, or versions of an artifact."""
    damaged: list[str] = []
    rows = client.ls(path, damaged)
    if rows and isinstance(rows[0], tuple):
        if as_json:
            emit_json([{**record_summary(r, a), "expires_at": e} for r, a, e in rows])
        else:
            click.echo("version\taliases\tfiles\tsize\tcreated\tttl\tdescription")
            for record, aliases, expires in rows:
                ttl = "-" if expires is None else ttl_state(expires)
                click.echo(f"v{record.version}\t{','.join(aliases) or '-'}\t{record.file_count}\t"
                           f"{format_size(record.size)}\t{record.created_at}\t{ttl}\t{record.description or '-'}")
    if damaged:
        raise CorruptData(f"{damaged[0]}" + (f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else "")
                          + "; the other versions are listed")
    if rows and isinstance(rows[0], tuple):
        return
    names = [str(r) for r in rows]
    if as_json:
        emit_json(names)
    else:
        for n in names:
            click.echo(n)


@cli.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def show(client: Client, ref, as_json):
    """Show one version: digest, size, aliases, description, metadata."""
    record = client.resolve(ref)
    aliases = client.repo.aliases_of(record.artifact, record.version)
    expires = lifecycle.expires_at(client.repo, record)
    if as_json:
        emit_json({**record_summary(record, aliases), "expires_at": expires})
        return
    click.echo(f"{record.ref}  ({record.type})")
    click.echo(f"  digest:      {record.digest}")
    click.echo(f"  files:       {record.counts()} ({format_size(record.size)})")
    click.echo(f"  aliases:     {', '.join(aliases) or '-'}")
    click.echo(f"  created:     {record.created_at} by {record.created_by}")
    if record.description:
        click.echo(f"  description: {record.description}")
    if record.metadata:
        click.echo(f"  metadata:    {json.dumps(record.metadata, sort_keys=True)}")
    if record.run:
        click.echo(f"  run:         {record.run}")
    if record.inputs:
        click.echo(f"  inputs:      {', '.join(record.inputs)}")
    if expires is not None:
        click.echo(f"  ttl:         {ttl_state(expires)}")


def entry_json(e: Entry) -> dict:
    return e.to_json()


@cli.command()
@click.argument("ref")
@click.option("--prefix", help="Only entries under this path.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def files(client: Client, ref, prefix, as_json):
    """List the files of a version."""
    record = client.resolve(ref)
    entries = client.manifest(record).files_under(prefix)
    if as_json:
        emit_json([entry_json(e) for e in entries])
        return
    for e in entries:
        shown = {"dir": f"{e.path}/", "link": f"{e.path} -> {e.target}"}.get(e.kind, e.path)
        click.echo(f"{e.size}\t{e.digest or '-'}\t{shown}")


@cli.command()
@click.argument("ref")
@click.option("--root", type=click.Path(file_okay=False), help="Where to put the files (default ./artifacts/NAME-vN).")
@click.option("--prefix", help="Only this entry or directory.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def get(client: Client, ref, root, prefix, as_json):
    """Download a version (verified, through the shared cache)."""
    record = client.resolve(ref)
    with Progress(_selected_bytes(client, record, prefix), "downloading") as progress:
        record, root, wrote, kept = client.download(ref, root, prefix, progress)
    if as_json:
        emit_json({"ref": str(record.ref), "root": root, "written": wrote, "unchanged": kept})
    else:
        click.echo(f"{record.ref} -> {root} ({wrote} files written, {kept} already there)")


def _selected_bytes(client: Client, record: VersionRecord, prefix: str | None) -> int:
    """What `get`/`cache warm` of `prefix` (all when None) will move: the total of its progress bar."""
    return sum(e.size for e in client.manifest(record).files_under(prefix)) if prefix else record.size


@cli.group()
def alias():
    """Point aliases at versions."""


@alias.command("set")
@click.argument("ref")
@click.argument("alias_name", metavar="ALIAS")
@click.pass_obj
def alias_set(client: Client, ref, alias_name):
    """Point ALIAS at the version REF names."""
    record = client.resolve(ref)
    client.repo.set_alias(record.artifact, alias_name, record.version)
    click.echo(f"{record.artifact}:{alias_name} -> v{record.version}")


@alias.command("rm")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.pass_obj
def alias_rm(client: Client, name, alias_name):
    """Remove ALIAS from artifact NAME."""
    artifact = client.artifact_name(name)
    version = client.repo.remove_alias(artifact, alias_name)
    click.echo(f"removed {artifact}:{alias_name} (was v{version})")


@alias.command("log")
@click.argument("ref", metavar="NAME:ALIAS")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def alias_log(client: Client, ref, as_json):
    """Every position ALIAS has had, newest first: version, when, who, from which version."""
    name, sep, alias_name = ref.rpartition(":")
    if not sep or not alias_name:
        raise UsageError(f"give NAME:ALIAS, not {ref!r}")
    artifact = client.artifact_name(name)
    entries = client.repo.alias_history(artifact, alias_name)[::-1]
    if as_json:
        emit_json([e.to_json() for e in entries])
        return
    click.echo("seq\tversion\tat\tby\tfrom")
    for e in entries:
        click.echo(f"{e.seq}\t{'-' if e.version is None else f'v{e.version}'}\t{e.at}\t{e.by or '-'}\t"
                   f"{'-' if e.previous is None else f'v{e.previous}'}")


@cli.command()
@click.argument("ref")
@click.option("-m", "--message", "description", help="New description.")
@with_options(metadata_options)
@click.option("--replace-metadata", is_flag=True, help="Replace the metadata instead of merging into it.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def update(client: Client, ref, description, metadata_pairs, metadata_file, replace_metadata, as_json):
    """Edit the description and metadata of a version (its content never changes)."""
    metadata = parse_metadata(metadata_pairs, metadata_file)
    record = client.repo.update(client.ref(ref), description, metadata, replace_metadata)
    if as_json:
        emit_json(record_summary(record))
    else:
        click.echo(f"updated {record.ref}")


@cli.command()
@click.argument("ref_a")
@click.argument("ref_b")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def diff(client: Client, ref_a, ref_b, as_json):
    """What changed from REF_A to REF_B."""
    d = client.diff(ref_a, ref_b)
    if as_json:
        emit_json({"added": [e.path for e in d.added], "removed": [e.path for e in d.removed],
                   "changed": [b.path for _, b in d.changed]})
        return
    for e in d.added:
        click.echo(f"+ {e.path}")
    for e in d.removed:
        click.echo(f"- {e.path}")
    for _, e in d.changed:
        click.echo(f"M {e.path}")


@cli.group()
def cache():
    """Inspect and clean the local cache."""


@cache.command("info")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def cache_info(client: Client, as_json):
    """Size and location of the cache."""
    info = client.cache.info()
    if as_json:
        emit_json(info)
    else:
        click.echo(f"{info['dir']}: {info['pieces']} pieces, {format_size(info['bytes'])} of "
                   f"{format_size(info['max_bytes'])}; {info['manifests']} manifests, "
                   f"{format_size(info['manifest_bytes'])}")


@cache.command("clean")
@click.pass_obj
def cache_clean(client: Client):
    """Empty the cache (mounted files stay readable; they are fetched again)."""
    freed = client.cache.clean()
    click.echo(f"freed {format_size(freed)}")


@cache.command("warm")
@click.argument("ref")
@click.option("--prefix", help="Only this entry or directory.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def cache_warm(client: Client, ref, prefix, as_json):
    """Fetch a version into the cache (verified), so mounts read it without the store."""
    record = client.resolve(ref)
    with Progress(_selected_bytes(client, record, prefix), "warming") as progress:
        record, result = client.warm(str(record.ref), prefix, progress)
    if result.not_stored:
        raise LocalIOError(f"{result.not_stored} pieces of {record.ref} could not be written to the cache in "
                           f"{client.cache.dir}: {result.store_error}")
    if result.corrupt:
        raise CorruptData(f"{result.corrupt} pieces of {record.ref} failed their checksum in the store "
                          "(not cached; `artifactfs verify` names them)")
    if as_json:
        emit_json({"ref": str(record.ref), "cache_dir": client.cache.dir, "files": result.files,
                   "fetched_bytes": result.fetched, "cached_bytes": result.cached, "uncacheable": result.uncacheable})
    else:
        click.echo(f"{record.ref}: {result.files} files in {client.cache.dir} ({format_size(result.fetched)} "
                   f"fetched, {format_size(result.cached)} already cached)")
        if result.uncacheable:
            click.echo(f"{result.uncacheable} references recorded without a checksum are read from their "
                       "source every time (not cached)")


# commands kept in their own modules (none of them imports this one)
cli.add_command(mount_cmds.mount_cmd)
cli.add_command(mount_cmds.umount_cmd)
cli.add_command(stage_cmds.stage)
lifecycle_cmds.register(cli, cache)
lineage_cmds.register(cli)
watch_cmd.register(cli)
ui_cmd.register(cli)
drafts_cmds.register(cli)


def main():
    cli(prog_name="artifactfs")


if __name__ == "__main__":
    main()
