"""`artifactfs stage ...` and the stage side of `artifactfs commit`. Thin: the logic is in
artifactfs/stage/ and artifactfs/mount/staging/."""

import os
import shutil

import click

from artifactfs import stage_records
from artifactfs.client import Client
from artifactfs.errors import Conflict, NotFound, UsageError
from artifactfs.mount.process import check_mountpoint, cli_argv, setup_logging, start_background
from artifactfs.names import Ref, parse_selector
from artifactfs.stage.commit import base_manifest, commit_mounted, commit_offline, stage_client
from artifactfs.stage.local import Stage, find_by_mountpoint, list_stages

from .options import print_commit
from .output import Progress, emit_json


class StageGroup(click.Group):
    """`stage REF MOUNTPOINT` creates a stage; `stage list|mount|discard ...` are subcommands."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["new", *args]
        return super().parse_args(ctx, args)


@click.group(cls=StageGroup)
def stage():
    """Writable staging mounts: `stage REF MOUNTPOINT`, then `commit MOUNTPOINT`.

    \b
    artifactfs stage REF MOUNTPOINT [--from ALIAS|vN | --empty] [--type TYPE]
    artifactfs stage list
    artifactfs stage mount ID MOUNTPOINT     (mount an existing stage again)
    artifactfs stage discard ID
    """


def _daemon_args(client: Client) -> list[str]:
    s = client.settings
    args = ["--cache-dir", s.cache_dir, "--cache-size", str(s.cache_size), "--timeout", str(s.timeout)]
    return args


def _mount(client: Client, st: Stage, path: str, foreground: bool, debug: bool) -> int | None:
    if foreground:
        from artifactfs.mount.staging.serve import serve_stage

        setup_logging(debug)
        serve_stage(client, st.id, path, debug=debug)
        return None
    argv = cli_argv([*_daemon_args(client), "stage", "mount", st.id, path, "--foreground", *(["--debug"] * debug)])
    return start_background(argv, path, st.log_path)


@stage.command("new", hidden=True)
@click.argument("ref")
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option("--from", "from_", metavar="ALIAS|vN", help="Start from this version (default: REF's, else latest).")
@click.option("--empty", is_flag=True, help="Start from an empty tree (a new artifact, or a full rewrite).")
@click.option("--type", "type_", help="Artifact type, for a new artifact (default dataset).")
@click.option("--foreground", is_flag=True, help="Serve in this process instead of a background daemon.")
@click.option("--debug", is_flag=True)
@click.pass_obj
def stage_new(client: Client, ref, mountpoint, from_, empty, type_, foreground, debug):
    """Mount a writable stage of REF on MOUNTPOINT."""
    if from_ and empty:
        raise UsageError("--from and --empty exclude each other")
    path = check_mountpoint(mountpoint)
    parsed = client.ref(ref)
    name = parsed.artifact
    if empty:
        try:
            existing = client.repo.artifact_info(name).get("type")
        except NotFound:
            existing = None
        version = digest = None
        art_type = existing or type_ or "dataset"
    else:
        base_ref = parsed
        if from_:
            v, a = parse_selector(from_)
            base_ref = Ref(name, version=v, alias=a)
        try:
            record = client.repo.resolve(base_ref)
        except NotFound as exc:
            raise NotFound(f"{exc} (use --empty to start a new artifact)") from None
        version, digest, art_type = record.version, record.manifest, record.type
    if type_ and type_ != art_type:
        raise Conflict(f"artifact {name} is a {art_type}, not a {type_}")
    st = Stage.create(client.settings.store, client.settings.endpoint_url, str(name), art_type, version, digest)
    try:
        pid = _mount(client, st, path, foreground, debug)
    except BaseException:
        if not foreground:
            shutil.rmtree(st.root, ignore_errors=True)
        raise
    if pid:
        click.echo(f"stage {st.id}: {name} from {st.base_label()} mounted on {path} (pid {pid}, log {st.log_path})")


@stage.command("mount")
@click.argument("stage_id", metavar="ID")
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option("--foreground", is_flag=True, help="Serve in this process instead of a background daemon.")
@click.option("--debug", is_flag=True)
@click.pass_obj
def stage_mount(client: Client, stage_id, mountpoint, foreground, debug):
    """Mount existing stage ID again (after an unmount, a crash or a reboot)."""
    st = Stage.open(stage_id)
    path = check_mountpoint(mountpoint)
    if not foreground and st.in_use():
        raise Conflict(f"stage {st.id} is already mounted on {st.info.mountpoint}")
    pid = _mount(client, st, path, foreground, debug)
    if pid:
        click.echo(f"stage {st.id}: {st.info.artifact} from {st.base_label()} mounted on {path} "
                   f"(pid {pid}, log {st.log_path})")


@stage.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def stage_list(client: Client, as_json):
    """Stages on this machine: base, mountpoint, and what changed."""
    rows = []
    for st in list_stages():
        live = st.in_use()
        try:
            sc = stage_client(client, st)
            try:
                changes = st.load_tree(base_manifest(sc, st), recover=False).changes()
            finally:
                sc.close()
        except Exception as exc:  # one unreadable stage must not hide the others
            changes = {"error": str(exc)}
        rows.append({"id": st.id, "artifact": st.info.artifact, "base": st.base_label(),
                     "mountpoint": st.info.mountpoint if live else None, "changes": changes,
                     "daemon_died": st.died(), **({"log": st.log_path} if st.died() else {})})
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        c = r["changes"]
        what = c["error"] if "error" in c else f"+{c['added']} ~{c['modified']} -{c['deleted']}"
        where = (f"mounted on {r['mountpoint']}" if r["mountpoint"] else
                 f"daemon died (see {r['log']}); remount or commit with --stage" if r["daemon_died"] else
                 "not mounted")
        click.echo(f"{r['id']}\t{r['artifact']}\tfrom {r['base']}\t{what}\t{where}")


@stage.command("discard")
@click.argument("stage_id", metavar="ID")
@click.pass_obj
def stage_discard(client: Client, stage_id):
    """Delete stage ID and everything it holds (it must not be mounted)."""
    st = Stage.open(stage_id)
    st.discard()
    sc = stage_client(client, st)
    try:
        stage_records.remove(sc.store, st.id)
    finally:
        sc.close()
    click.echo(f"discarded stage {st.id} ({st.info.artifact} from {st.base_label()})")


# ---- commit -------------------------------------------------------------------------------------
def is_stage_target(target: str | None) -> bool:
    return bool(target) and (os.path.isdir(target) or find_by_mountpoint(target) is not None)


def commit_stage(client: Client, mountpoint: str | None, stage_id: str | None, require_base: bool, as_json: bool,
                 args: dict) -> None:
    """`artifactfs commit MOUNTPOINT` or `artifactfs commit --stage ID`."""
    with Progress.bar("uploading") as progress:
        if stage_id:
            sc = commit_offline(client, stage_id, progress=progress, require_base=require_base, **args)
        else:
            sc = commit_mounted(client, mountpoint, progress=progress, require_base=require_base, **args)
    record = sc.result.record
    if sc.superseded and not as_json:
        others = ", ".join(f"v{v}" for v in sc.superseded)
        click.echo(f"note: latest moved since this stage started from {sc.base}: v{record.version} supersedes "
                   f"{others}, whose changes are not in it; it holds the stage's content as it is "
                   "(use --require-base to refuse)")
    print_commit(sc.result, as_json, base=sc.base, superseded=[f"v{v}" for v in sc.superseded])
    if not as_json:
        click.echo(f"the stage continues from v{record.version}")
    if sc.daemon_lost:
        raise UsageError(f"committed {record.ref}, but the staging daemon stopped during the commit; "
                         f"remount the stage to continue")
