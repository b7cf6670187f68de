"""`artifactfs ui`: the read-only web view of the store (artifactfs/ui/), served by uvicorn."""

import ipaddress
import secrets
import socket

import click

from artifactfs.client import Client
from artifactfs.errors import LocalIOError, UsageError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a taken port is one clear error (and port 0 picks one)."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        return sock
    except OSError as exc:
        raise LocalIOError(f"cannot listen on {host}:{port}: {exc.strerror or exc}"
                           + ("; pick another with --port" if port else "")) from None


@click.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0 picks a free one).")
@click.option("--open", "open_browser", is_flag=True, help="Open the view in a web browser.")
@click.option("--allow-remote", is_flag=True,
              help="Allow a non-loopback --host; every request then needs the token printed at start.")
@click.pass_obj
def ui_cmd(client: Client, host, port, open_browser, allow_remote):
    """Serve a read-only web view of the store: artifacts, versions, files, diffs and lineage."""
    import uvicorn

    from artifactfs.ui.app import create_app

    remote = not is_loopback(host)
    if remote and not allow_remote:
        raise UsageError(f"--host {host} is not a loopback address, so anyone who reaches it could read the "
                         "store: add --allow-remote (every request then needs a token)")
    client.repo.list_entities()  # a store that cannot be read fails here, in one line, not on the first page
    token = secrets.token_urlsafe(24) if remote else None
    sock = listen(host, port)
    bound_port = sock.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{bound_port}/" + (f"?token={token}" if token else "")
    # Host headers a loopback view answers: its own address and the loopback names, so a page elsewhere
    # whose name resolves to a loopback address (DNS rebinding) gets nothing, over IPv6 too
    hosts = ("*",) if remote else ("127.0.0.1", "localhost", "::1", host)
    app = create_app(client, token=token, hosts=hosts)
    click.echo(f"serving {client.settings.store} at {url} (read-only; Ctrl-C stops it)")
    if token:
        click.echo("the token in this URL is required on every request (cookie, or header X-Artifactfs-Token)")
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        app.close()
    click.echo("stopped")


def register(cli) -> None:
    cli.add_command(ui_cmd)
