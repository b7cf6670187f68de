"""`watch`: run a command or call a webhook for each event of the artifacts a pattern names (events.py,
deliver.py; docs/GUIDE.md, "Automations")."""

import hashlib
import os
import signal

import click

from artifactfs.client import Client
from artifactfs.deliver import Target, deliver
from artifactfs.errors import UsageError
from artifactfs.events import Watcher, check_patterns, parse_kinds, wanted


class _CommandAfterDashes(click.Command):
    """`watch [PATTERN]... [OPTIONS] -- COMMAND...`: what follows `--` is the command, never patterns."""

    def parse_args(self, ctx, args):
        if "--" in args:
            at = args.index("--")
            ctx.meta["watch_command"] = args[at + 1:]
            args = args[:at]
        return super().parse_args(ctx, args)


@click.command("watch", cls=_CommandAfterDashes)
@click.argument("patterns", nargs=-1, metavar="[PATTERN]...")
@click.option("--on", "kinds", multiple=True, metavar="EVENT",
              help="new-version, alias:NAME (a glob: alias:prod, alias:*), alias-removed or deleted; "
                   "repeatable (default: all).")
@click.option("--webhook", metavar="URL", help="POST each event's JSON here (instead of -- COMMAND).")
@click.option("--secret-env", default="ARTIFACTFS_WEBHOOK_SECRET", show_default=True, metavar="VAR",
              help="Environment variable with the secret that signs webhook bodies (HMAC-SHA256).")
@click.option("--cursor", metavar="NAME", help="The cursor kept in the store: where this watcher is, shared with "
              "any watcher of that name (default: one per PATTERN, --on and target).")
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(0.1, 3600),
              help="Seconds between polls of the store.")
@click.option("--tries", default=5, show_default=True, type=click.IntRange(1, 100),
              help="Deliveries tried per event (1, 2, 4... s apart) before it goes to the dead-letter file.")
@click.option("--dead-letter", type=click.Path(dir_okay=False), metavar="FILE",
              help="Where undeliverable events go (default: CACHE_DIR/watch/CURSOR.dead.jsonl).")
@click.option("--once", is_flag=True, help="Deliver what is there now, then exit.")
@click.pass_obj
def watch_cmd(client: Client, patterns, kinds, webhook, secret_env, cursor, interval, tries, dead_letter, once):
    """Run COMMAND (after --) or call --webhook for each event of the artifacts PATTERN names
    (ENTITY/PROJECT/NAME globs; every artifact when none), in order, at least once. A new cursor starts
    at what the store holds now."""
    ctx = click.get_current_context()
    command = ctx.meta.get("watch_command")
    patterns, kinds = check_patterns(patterns), parse_kinds(kinds)
    if command is not None and not command:
        raise UsageError("nothing after --: give the command to run")
    secret = os.environ.get(secret_env)
    target = Target(command=command, webhook=webhook, secret=secret.encode() if secret else None)
    name = cursor or _default_cursor(patterns, kinds, target)
    watcher = Watcher(client.repo, patterns, name, interval)
    dead = dead_letter or os.path.join(client.settings.cache_dir, "watch", f"{name}.dead.jsonl")
    signal.signal(signal.SIGTERM, _interrupt)  # as Ctrl-C: the lease is handed back on the way out
    click.echo(f"watching {' '.join(patterns)} for {', '.join(kinds)} (cursor {name}, every {interval:g} s)",
               err=True)
    polls = 0

    def stop() -> bool:
        nonlocal polls
        polls += 1
        return once and polls > 2  # --once: the first poll (a new cursor's start), the one after it

    try:
        for event in watcher.events(stop):
            if wanted(event, kinds):
                ok = deliver(target, event, tries=tries, dead_letter=dead)
                click.echo(f"{'delivered' if ok else 'dead-lettered'} {event.kind} {event.id}")
    except KeyboardInterrupt:
        pass


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _default_cursor(patterns: list[str], kinds: list[str], target: Target) -> str:
    what = "\n".join([*patterns, "|", *kinds, "|", *(target.command or [target.webhook or ""])])
    return "w-" + hashlib.sha256(what.encode()).hexdigest()[:16]


def register(cli) -> None:
    cli.add_command(watch_cmd)
