"""Lineage: which run produced a version, which versions it used, and which runs used a version.

The forward edges live in the version record (`run`, `inputs` as exact `e/p/n:vN`). Reverse edges are
small objects, each created with put_if_absent by the one writer that knows it, so concurrent
writers never overwrite each other and nothing needs a lock:

    runs/<run>/outputs/<e>/<p>/<n>/<N>.json              the run committed e/p/n:vN
    runs/<run>/inputs/<e>/<p>/<n>/<N>.json               the run used e/p/n:vN
    artifacts/<e>/<p>/<n>/used_by/<N>/<run>.json         e/p/n:vN was used by the run

A walk goes both ways from a version: upstream (version -> producing run -> its inputs -> ...) and
downstream (version -> consuming runs -> their outputs -> ...), `depth` run hops each way.
"""

import contextlib
from dataclasses import dataclass, field

from .errors import CorruptData, NotFound, PreconditionFailed, UsageError
from .manifest import canonical_json
from .names import ArtifactName, Ref, check_name, parse_ref
from .records import VersionRecord, now_iso
from .repo import Repository


def check_run(run: str) -> str:
    return check_name(run, "run id")


def _exact(record: VersionRecord) -> str:
    return f"{record.artifact}:v{record.version}"


def _run_key(run: str, direction: str, artifact: ArtifactName, version: int) -> str:
    return f"runs/{run}/{direction}/{artifact.entity}/{artifact.project}/{artifact.name}/{version}.json"


def _used_by_key(artifact: ArtifactName, version: int, run: str) -> str:
    return f"{artifact.prefix}used_by/{version}/{run}.json"


def _create(repo: Repository, key: str) -> None:
    # the edge is already there: edges are facts, recording one twice changes nothing
    with contextlib.suppress(PreconditionFailed):
        repo.store.put_if_absent(key, canonical_json({"at": now_iso()}))


def resolve_inputs(repo: Repository, inputs, entity: str | None = None, project: str | None = None) -> list[str]:
    """Each input ref (alias or version) as the exact version it names now: `e/p/n:vN`."""
    out = []
    for text in inputs:
        ref = text if isinstance(text, Ref) else parse_ref(str(text), entity, project)
        out.append(_exact(repo.resolve(ref)))
    return out


def record_commit(repo: Repository, record: VersionRecord) -> None:
    """Write the reverse edges of a committed version: run -> output, run -> inputs, input -> run."""
    if not record.run:
        return
    _create(repo, _run_key(record.run, "outputs", record.artifact, record.version))
    for text in record.inputs:
        ref = parse_ref(text, require_selector=True)
        if ref.version is None:  # inputs are pinned (resolve_inputs) before a record is written
            raise CorruptData(f"{record.ref}: input {text!r} names no version")
        _create(repo, _run_key(record.run, "inputs", ref.artifact, ref.version))
        _create(repo, _used_by_key(ref.artifact, ref.version, record.run))


def record_use(repo: Repository, record: VersionRecord, run: str) -> None:
    """`run` consumed this version."""
    check_run(run)
    _create(repo, _run_key(run, "inputs", record.artifact, record.version))
    _create(repo, _used_by_key(record.artifact, record.version, run))


def used_by(repo: Repository, artifact: ArtifactName, version: int) -> list[str]:
    prefix = f"{artifact.prefix}used_by/{version}/"
    return sorted(info.key[len(prefix):].removesuffix(".json") for info in repo.store.list(prefix))


def _run_edges(repo: Repository, run: str, direction: str) -> list[str]:
    prefix = f"runs/{run}/{direction}/"
    refs = []
    for info in repo.store.list(prefix):
        parts = info.key[len(prefix):].removesuffix(".json").split("/")
        if len(parts) == 4 and parts[3].isdigit():
            refs.append(f"{parts[0]}/{parts[1]}/{parts[2]}:v{parts[3]}")
    return sorted(refs)


def run_outputs(repo: Repository, run: str) -> list[str]:
    return _run_edges(repo, check_run(run), "outputs")


def run_inputs(repo: Repository, run: str) -> list[str]:
    return _run_edges(repo, check_run(run), "inputs")


@dataclass
class RunNode:
    run: str
    artifacts: list["ArtifactNode"] = field(default_factory=list)  # inputs upstream, outputs downstream

    def to_json(self) -> dict:
        return {"run": self.run, "artifacts": [a.to_json() for a in self.artifacts]}


MAX_NODES = 500  # artifact versions a lineage walk expands; past it the result says it is capped


@dataclass
class ArtifactNode:
    ref: str
    deleted: bool = False
    runs: list[RunNode] = field(default_factory=list)  # producer upstream, consumers downstream
    seen: bool = False  # expanded elsewhere in this walk: shown once, named again here
    type: str = ""  # the artifact's type (dataset, model, ...), from its version record

    def to_json(self) -> dict:
        obj: dict = {"ref": self.ref, "runs": [r.to_json() for r in self.runs]}
        if self.type:
            obj["type"] = self.type
        if self.deleted:
            obj["deleted"] = True
        if self.seen:
            obj["seen"] = True
        return obj


@dataclass
class Lineage:
    ref: str
    upstream: ArtifactNode
    downstream: ArtifactNode
    capped: int = 0  # the number of versions the walk stopped at, 0 when it did not

    def to_json(self) -> dict:
        obj: dict = {"ref": self.ref, "upstream": [r.to_json() for r in self.upstream.runs],
                     "downstream": [r.to_json() for r in self.downstream.runs]}
        if self.upstream.type:
            obj["type"] = self.upstream.type
        if self.capped:
            obj["capped"] = self.capped
        return obj

    def lines(self) -> list[str]:
        out = [self.ref]
        if self.upstream.runs:
            out.append("  upstream:")
            out += _tree_lines(self.upstream, "<-", 2)
        if self.downstream.runs:
            out.append("  downstream:")
            out += _tree_lines(self.downstream, "->", 2)
        if len(out) == 1:
            out.append("  (no recorded lineage)")
        if self.capped:
            out.append(f"  (stopped at {self.capped} versions: ask for less --depth)")
        return out


def _tree_lines(node: ArtifactNode, arrow: str, indent: int) -> list[str]:
    out = []
    for run in node.runs:
        out.append(" " * indent * 2 + f"{arrow} run {run.run}")
        for art in run.artifacts:
            note = " (deleted)" if art.deleted else " (shown above)" if art.seen else ""
            out.append(" " * (indent + 1) * 2 + f"{arrow} {art.ref}{note}")
            out += _tree_lines(art, arrow, indent + 2)
    return out


def _record_or_none(repo: Repository, ref_text: str) -> VersionRecord | None:
    try:
        return repo.resolve(parse_ref(ref_text))
    except NotFound:
        return None


def walk(repo: Repository, record: VersionRecord, depth: int = 3, max_nodes: int = MAX_NODES) -> Lineage:
    """The lineage graph around `record`, `depth` run hops upstream and downstream. Each version is
    expanded once per direction (a version reached again is named, marked `seen`), so the walk costs
    O(versions + edges) however the runs interlink; it stops after `max_nodes` versions (`capped`)."""
    if depth < 0:
        raise UsageError("depth must be 0 or more")
    walker = _Walker(repo, max_nodes)
    ref = _exact(record)
    upstream = walker.expand(record, ref, depth, set(), walker.producer)
    downstream = walker.expand(record, ref, depth, set(), walker.consumers)
    return Lineage(ref, upstream, downstream, max_nodes if walker.capped else 0)


class _Walker:
    """One lineage walk: the runs' edges read once each, the versions expanded once per direction."""

    def __init__(self, repo: Repository, max_nodes: int):
        self.repo, self.max_nodes, self.capped = repo, max_nodes, False
        self._inputs: dict[str, list[str]] = {}
        self._outputs: dict[str, list[str]] = {}

    def expand(self, rec: VersionRecord | None, ref: str, left: int, seen: set, edges) -> ArtifactNode:
        node = ArtifactNode(ref, deleted=rec is None, type=rec.type if rec is not None else "")
        if rec is None or left == 0:
            return node
        if ref in seen:
            node.seen = True
            return node
        if len(seen) >= self.max_nodes:
            self.capped = True
            return node
        seen.add(ref)
        for run_id, refs in edges(rec):
            run = RunNode(run_id)
            run.artifacts = [self.expand(_record_or_none(self.repo, r), r, left - 1, seen, edges) for r in refs]
            node.runs.append(run)
        return node

    def producer(self, rec: VersionRecord) -> list[tuple[str, list[str]]]:
        """The run that made `rec` and the versions it used."""
        if not rec.run:
            return []
        if rec.inputs:
            return [(rec.run, rec.inputs)]
        if rec.run not in self._inputs:
            self._inputs[rec.run] = run_inputs(self.repo, rec.run)
        return [(rec.run, self._inputs[rec.run])]

    def consumers(self, rec: VersionRecord) -> list[tuple[str, list[str]]]:
        """The runs that used `rec` and the versions each made."""
        out = []
        for consumer in used_by(self.repo, rec.artifact, rec.version):
            if consumer not in self._outputs:
                self._outputs[consumer] = run_outputs(self.repo, consumer)
            out.append((consumer, self._outputs[consumer]))
        return out
