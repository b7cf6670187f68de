"""`artifactfs mount` and `artifactfs umount`: the read-only view as a background daemon."""

import hashlib
import os

import click

from artifactfs.cache_dir import claim_cache_dir
from artifactfs.client import Client
from artifactfs.config import MAX_TIMEOUT
from artifactfs.mount.process import check_mountpoint, cli_argv, setup_logging, start_background, unmount


def _client_with(client: Client, **overrides) -> Client:
    """The group's client, or a new one if `mount` itself was given store/cache options."""
    if not any(v is not None for v in overrides.values()):
        return client
    s = client.settings
    base = {"store": s.store, "endpoint_url": s.endpoint_url, "entity": s.entity, "project": s.project,
            "cache_dir": s.cache_dir, "cache_size": s.cache_size, "timeout": s.timeout}
    base.update({k: v for k, v in overrides.items() if v is not None})
    return Client(**base)


@click.command("mount")
@click.argument("mountpoint", type=click.Path())
@click.option("--store", help="Store: a directory or s3://bucket/prefix (overrides the global option).")
@click.option("--cache-dir", help="Local cache directory (shared with `get`).")
@click.option("--cache-size", help="Cache bound, e.g. 20G (default 10G).")
@click.option("--timeout", help="Seconds before a stalled store read fails with EIO (default 10).")
@click.option("--alias-ttl", type=float, default=2.0, show_default=True,
              help="Seconds before name:alias directories are re-resolved.")
@click.option("--foreground", is_flag=True, help="Serve in this process instead of a background daemon.")
@click.option("--allow-other", is_flag=True, help="Let other users read the mount (needs user_allow_other).")
@click.option("--log-file", type=click.Path(dir_okay=False), help="Daemon log (default CACHE_DIR/logs/mount-*.log).")
@click.option("--debug", is_flag=True, help="Log every FUSE request.")
@click.pass_obj
def mount_cmd(client: Client, mountpoint, store, cache_dir, cache_size, timeout, alias_ttl, foreground,
              allow_other, log_file, debug):
    """Mount every artifact read-only at MOUNTPOINT/<entity>/<project>/<name>:<vN|alias>/."""
    client = _client_with(client, store=store, cache_dir=cache_dir, cache_size=cache_size, timeout=timeout)
    path = check_mountpoint(mountpoint)
    if not 0 <= alias_ttl <= MAX_TIMEOUT:  # nan too
        raise click.BadParameter(f"must be seconds from 0 to {MAX_TIMEOUT:.0f}", param_hint="--alias-ttl")
    if foreground:
        from artifactfs.mount.readonly.serve import serve_readonly

        setup_logging(debug)
        serve_readonly(client, path, alias_ttl=alias_ttl, allow_other=allow_other, debug=debug)
        return
    s = client.settings
    args = ["--store", s.store, "--cache-dir", s.cache_dir, "--cache-size", str(s.cache_size),
            "--timeout", str(s.timeout)]
    if s.endpoint_url:
        args += ["--endpoint-url", s.endpoint_url]
    args += ["mount", path, "--foreground", "--alias-ttl", str(alias_ttl)]
    args += ["--allow-other"] * allow_other + ["--debug"] * debug
    log_file = log_file or os.path.join(
        claim_cache_dir(s.cache_dir), "logs", f"mount-{hashlib.sha1(path.encode()).hexdigest()[:12]}.log")
    pid = start_background(cli_argv(args), path, log_file)
    click.echo(f"mounted {s.store} on {path} (pid {pid}, log {log_file})")


@click.command("umount")
@click.argument("mountpoint", type=click.Path())
def umount_cmd(mountpoint):
    """Unmount an artifactfs mount (the daemon then exits)."""
    unmount(mountpoint)
    click.echo(f"unmounted {os.path.abspath(mountpoint)}")
