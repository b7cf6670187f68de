"""`use` and `lineage`: recording consumers and walking the graph of runs and versions."""

import click

from artifactfs import lineage
from artifactfs.client import Client

from .output import emit_json


@click.command("use")
@click.argument("ref")
@click.option("--run", required=True, help="Id of the run that uses the version.")
@click.pass_obj
def use(client: Client, ref, run):
    """Record that run ID used REF (resolved to its exact version now)."""
    record = client.resolve(ref)
    lineage.record_use(client.repo, record, run)
    click.echo(f"{record.artifact}:v{record.version} used by run {run}")


@click.command("lineage")
@click.argument("ref")
@click.option("--depth", default=3, show_default=True, type=click.IntRange(0, 100), help="Run hops each way.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def lineage_cmd(client: Client, ref, depth, as_json):
    """Show which runs produced REF and what they used (upstream), and which runs used it (downstream)."""
    graph = lineage.walk(client.repo, client.resolve(ref), depth)
    if as_json:
        emit_json(graph.to_json())
    else:
        for line in graph.lines():
            click.echo(line)


def register(cli) -> None:
    cli.add_command(use)
    cli.add_command(lineage_cmd)
