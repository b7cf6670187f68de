"""Serve one stage in the foreground (what `artifactfs stage mount ID MOUNTPOINT --foreground` runs).

The daemon owns the stage while it runs (flock on the stage's lock file), records its mountpoint and
pid in stage.json, and marks the stage `clean` only after a normal exit with everything journaled.
"""

import logging
import os
from collections.abc import Callable

import trio

from ... import stage_records
from ...client import Client
from ...stage.commit import base_manifest, stage_client
from ...stage.local import Stage
from ..daemon import Workers, run_foreground
from ..process import check_mountpoint
from ..reader import ChunkSource
from .files import StageFiles
from .fs import StagingFS

log = logging.getLogger(__name__)


def serve_stage(client: Client, stage_id: str, mountpoint: str, *, allow_other: bool = False, debug: bool = False,
                on_ready: Callable[[], None] | None = None) -> None:
    mountpoint = check_mountpoint(mountpoint)
    stage = Stage.open(stage_id)
    stage.lock()
    try:
        client = stage_client(client, stage)
        tree = stage.load_tree(base_manifest(client, stage))
        if stage.compact(tree):
            log.info("stage %s: journal of %d operations compacted", stage.id, stage.replayed)
        removed = stage.remove_unreferenced_data(tree)
        if removed:
            log.info("stage %s: removed %d data files no longer used", stage.id, removed)
        stage.info.mountpoint, stage.info.pid, stage.info.clean = mountpoint, os.getpid(), False
        stage.save()
        stage_records.write(client.store, stage.id, stage.info.artifact, stage.info.base_version,
                            stage.info.base_manifest)  # keeps the base from gc while the stage is open
        workers = Workers(network=32, cpu=4)
        source = ChunkSource(client.fetcher, workers, timeout=client.settings.timeout)
        files = StageFiles(stage, tree, source, workers)
        fs = StagingFS(stage, tree, files)

        def services(nursery: trio.Nursery) -> None:
            source.attach(nursery)
            nursery.start_soon(files.sync_loop)
            nursery.start_soon(fs.watch_freezer)

        try:
            run_foreground(fs, mountpoint, fsname=f"artifactfs-stage:{stage.id}", subtype="artifactfs",
                           allow_other=allow_other, debug=debug, on_ready=on_ready, services=services)
        finally:
            fs.flush_all()
            files.journal.close()
            stage.reload()
            stage.info.pid, stage.info.clean = None, True
            stage.save()
            log.info("stage %s saved", stage.id)
    finally:
        stage.unlock()
