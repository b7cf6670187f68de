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


@dataclass
class ArtifactNode:
    ref: str
    deleted: bool = False
    runs: list[RunNode] = field(default_factory=list)  # producer upstream, consumers downstream

    def to_json(self) -> dict:
        obj: dict = {"ref": self.ref, "runs": [r.to_json() for r in self.runs]}
        if self.deleted:
            obj["deleted"] = True
        return obj


@dataclass
class Lineage:
    ref: str
    upstream: ArtifactNode
    downstream: ArtifactNode

    def to_json(self) -> dict:
        return {"ref": self.ref, "upstream": [r.to_json() for r in self.upstream.runs],
                "downstream": [r.to_json() for r in self.downstream.runs]}

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
        return out


def _tree_lines(node: ArtifactNode, arrow: str, indent: int) -> list[str]:
    out = []
    for run in node.runs:
        out.append(" " * indent * 2 + f"{arrow} run {run.run}")
        for art in run.artifacts:
            out.append(" " * (indent + 1) * 2 + f"{arrow} {art.ref}" + (" (deleted)" if art.deleted else ""))
            out += _tree_lines(art, arrow, indent + 2)
    return out


def _record_or_none(repo: Repository, ref_text: str) -> VersionRecord | None:
    try:
        return repo.resolve(parse_ref(ref_text))
    except NotFound:
        return None


def walk(repo: Repository, record: VersionRecord, depth: int = 3) -> Lineage:
    """The lineage graph around `record`, `depth` run hops upstream and downstream."""
    if depth < 0:
        raise UsageError("depth must be 0 or more")

    def up(rec: VersionRecord | None, ref: str, left: int, seen: set) -> ArtifactNode:
        node = ArtifactNode(ref, deleted=rec is None)
        if rec is None or left == 0 or not rec.run or ref in seen:
            return node
        seen = seen | {ref}
        run = RunNode(rec.run)
        for inp in (rec.inputs or run_inputs(repo, rec.run)):
            run.artifacts.append(up(_record_or_none(repo, inp), inp, left - 1, seen))
        node.runs.append(run)
        return node

    def down(rec: VersionRecord | None, ref: str, left: int, seen: set) -> ArtifactNode:
        node = ArtifactNode(ref, deleted=rec is None)
        if rec is None or left == 0 or ref in seen:
            return node
        seen = seen | {ref}
        for consumer in used_by(repo, rec.artifact, rec.version):
            run = RunNode(consumer)
            for out in run_outputs(repo, consumer):
                run.artifacts.append(down(_record_or_none(repo, out), out, left - 1, seen))
            node.runs.append(run)
        return node

    ref = _exact(record)
    return Lineage(ref, up(record, ref, depth, set()), down(record, ref, depth, set()))
