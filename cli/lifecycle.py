"""`rm`, `ttl`, `gc`, `verify` and `cache verify`: deleting versions and checking what is stored."""

import click

from artifactfs import lifecycle
from artifactfs.client import Client
from artifactfs.config import format_size
from artifactfs.errors import CorruptData
from artifactfs.verify import verify as verify_versions

from .output import emit_json, ttl_state


@click.command("rm")
@click.argument("ref")
@click.option("--force", is_flag=True, help="Also remove the aliases that point at the version.")
@click.pass_obj
def rm(client: Client, ref, force):
    """Delete a version (its number is never reused; gc reclaims its storage)."""
    record, removed = lifecycle.delete_version(client.repo, client.ref(ref), force)
    extra = f" and aliases {', '.join(removed)}" if removed else ""
    click.echo(f"deleted {record.artifact}:v{record.version}{extra}")


@click.command("ttl")
@click.argument("ref")
@click.argument("duration", required=False)
@click.pass_obj
def ttl(client: Client, ref, duration):
    """Expire a version after DURATION (30d, 12h, 90m; `none` keeps it); without DURATION, show it.

    gc deletes expired versions, with their aliases."""
    if duration is None:
        record, expires = lifecycle.get_ttl(client.repo, client.ref(ref))
    else:
        seconds = None if duration.lower() in ("none", "off", "never") else lifecycle.parse_duration(duration)
        record, expires = lifecycle.set_ttl(client.repo, client.ref(ref), seconds)
        if seconds is not None and seconds < 60:
            click.echo(f"artifactfs: warning: {record.artifact}:v{record.version} expires now: the next "
                       "`artifactfs gc` deletes it (`ttl REF none` takes that back)", err=True)
    where = f"{record.artifact}:v{record.version}"
    if expires is None:
        click.echo(f"{where}: no ttl")
    else:
        click.echo(f"{where}: {ttl_state(expires)}")


@click.command("gc")
@click.option("--dry-run", is_flag=True, help="Report what would be deleted; change nothing.")
@click.option("--grace", default="1h", show_default=True,
              help="Never delete objects younger than this (protects uploads of commits in progress).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def gc(client: Client, dry_run, grace, as_json):
    """Delete expired versions, then manifests and blobs no version or draft refers to."""
    from artifactfs.gc import gc as run_gc

    report = run_gc(client.repo, lifecycle.parse_duration(grace), dry_run)
    if as_json:
        emit_json(report.to_json())
    elif report.skipped:
        click.echo(f"deleted nothing: {report.skipped} (a commit may be restoring it; if this persists, "
                   "run `artifactfs verify --all`)")
    else:
        _gc_summary(report, dry_run)
    if report.damaged:
        for problem in report.damaged:
            click.echo(f"damaged: {problem}")
        raise CorruptData(f"gc kept what {len(report.damaged)} damaged store objects may still name; "
                          "see `artifactfs verify --all`")


def _gc_summary(report, dry_run: bool) -> None:
    verb = "would delete" if dry_run else "deleted"
    for ref in report.expired:
        click.echo(f"expired: {ref}")
    click.echo(f"{verb} {len(report.expired)} expired versions, {len(report.deleted)} objects "
               f"({format_size(report.deleted_bytes)}); kept {report.live_manifests} manifests and "
               f"{report.live_blobs} blobs in use, {report.kept_young} unreferenced within the grace period")
    click.echo(f"{'would abort' if dry_run else 'aborted'} {report.aborted_uploads} incomplete uploads "
               f"({format_size(report.aborted_bytes)}) begun before the grace period")


@click.command("verify")
@click.argument("refs", nargs=-1)
@click.option("--all", "all_versions", is_flag=True, help="Every live version in the store.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def verify(client: Client, refs, all_versions, as_json):
    """Re-hash the manifests, blobs and reference sources of versions; exit 7 on any problem."""
    if bool(refs) == all_versions:
        raise click.UsageError("give REF... or --all")
    unreadable: list[lifecycle.Unreadable] = []
    records = (lifecycle.live_versions(client.repo, unreadable) if all_versions else
               [client.resolve(r) for r in refs])
    report = verify_versions(client.repo, records, client.references)
    report.problems[:0] = [str(u) for u in unreadable]
    if as_json:
        emit_json(report.__dict__)
    else:
        for problem in report.problems:
            click.echo(problem)
        click.echo(f"checked {report.versions} versions, {report.blobs} blobs, {report.references} references: "
                   f"{len(report.problems) or 'no'} problems")
    if report.problems:
        raise CorruptData(f"verify found {len(report.problems)} problems")


def cache_verify_command(group):
    @group.command("verify")
    @click.pass_obj
    def cache_verify(client: Client):
        """Re-hash every cached piece; damaged ones are removed (and fetched again when read)."""
        checked, damaged = client.cache.verify()
        for digest in damaged:
            click.echo(f"damaged piece removed: {digest}")
        click.echo(f"checked {checked} pieces: {len(damaged) or 'no'} damaged")
        if damaged:
            raise CorruptData(f"{len(damaged)} cached pieces were damaged (removed)")

    return cache_verify


def register(cli, cache_group) -> None:
    for command in (rm, ttl, gc, verify):
        cli.add_command(command)
    cache_verify_command(cache_group)
