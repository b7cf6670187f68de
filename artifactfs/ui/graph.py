"""The lineage graph as SVG, laid out on the server: one column per hop (producing runs and their
inputs to the left of a version, consuming runs and their outputs to the right), each node a link.
Runs are pills, versions boxes coloured by their artifact's type (TYPE_CLASSES; any other type is
"other"), the version the page is about has a heavy outline, a deleted one a dashed one: the page's
legend (lineage.html) says so."""

from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape

ROW = 56
NODE_H = 34
GAP = 70
PAD = 16
CHAR_W = 7.4  # of the 12px monospace the nodes use
TYPE_CLASSES = ("dataset", "model", "result")  # artifact types with a colour of their own (style.css)


@dataclass
class Node:
    id: str
    label: str
    kind: str  # "run", "version", "focus" or "deleted"
    href: str
    column: int
    row: int = 0
    type: str = ""  # a version's artifact type

    @property
    def classes(self) -> str:
        if self.kind == "run":
            return "node run"
        colour = self.type if self.type in TYPE_CLASSES else "other"
        return f"node {self.kind} t-{colour}" + (" version" if self.kind == "focus" else "")


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: set[tuple[str, str]] = field(default_factory=set)

    def add(self, node: Node) -> str:
        self.nodes.setdefault(node.id, node)
        return node.id


def build(lineage: dict, version_href: Callable[[str], str], run_href: Callable[[str], str]) -> Graph:
    """Graph of Lineage.to_json(): `upstream` and `downstream` are lists of runs with their artifacts."""
    graph = Graph()
    focus = graph.add(Node("v:" + lineage["ref"], lineage["ref"], "focus", version_href(lineage["ref"]), 0,
                           type=lineage.get("type", "")))

    def art(obj: dict, column: int) -> str:
        kind = "deleted" if obj.get("deleted") else "version"
        return graph.add(Node("v:" + obj["ref"], obj["ref"], kind, version_href(obj["ref"]), column,
                              type=obj.get("type", "")))

    def run(name: str, column: int) -> str:
        return graph.add(Node("r:" + name, name, "run", run_href(name), column))

    def walk(runs: list, near: str, column: int, step: int) -> None:
        """The runs one column from `near` (step -1: the runs that produced it, and their inputs
        further left; +1: the runs that used it, and their outputs further right)."""
        def edge(inner: str, outer: str) -> None:  # inner is nearer the focus; edges follow the data
            graph.edges.add((inner, outer) if step > 0 else (outer, inner))

        for r in runs:
            rid = run(r["run"], column)
            edge(near, rid)
            for a in r["artifacts"]:
                aid = art(a, column + step)
                edge(rid, aid)
                walk(a.get("runs", []), aid, column + 2 * step, step)

    walk(lineage.get("upstream", []), focus, -1, -1)
    walk(lineage.get("downstream", []), focus, 1, 1)
    return graph


def _width(label: str) -> float:
    return max(120.0, len(label) * CHAR_W + 24)


def render(graph: Graph) -> str:
    """The SVG document (as text) of a graph; every label and link is escaped."""
    columns: dict[int, list[Node]] = {}
    for node in graph.nodes.values():
        columns.setdefault(node.column, []).append(node)
    order = sorted(columns)
    x_of: dict[int, float] = {}
    x = float(PAD)
    widths = {c: max(_width(n.label) for n in columns[c]) for c in order}
    for c in order:
        x_of[c] = x
        x += widths[c] + GAP
    tallest = max(len(v) for v in columns.values())
    height = PAD * 2 + tallest * ROW
    for c in order:
        nodes = sorted(columns[c], key=lambda n: n.label)
        top = PAD + (tallest - len(nodes)) * ROW / 2  # centre each column
        for i, n in enumerate(nodes):
            n.row = int(top + i * ROW)
    width = x - GAP + PAD
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage" width="{width:.0f}" height="{height:.0f}" '
           f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="lineage graph">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>']
    for a, b in sorted(graph.edges):
        na, nb = graph.nodes[a], graph.nodes[b]
        x1, y1 = x_of[na.column] + widths[na.column], na.row + NODE_H / 2
        x2, y2 = x_of[nb.column], nb.row + NODE_H / 2
        mid = (x1 + x2) / 2
        out.append(f'<path class="edge" d="M{x1:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} '
                   f'{x2:.0f},{y2:.0f}" marker-end="url(#arrow)"/>')
    for n in sorted(graph.nodes.values(), key=lambda n: (n.column, n.row)):
        w = widths[n.column]
        x0 = x_of[n.column]
        rx = 17 if n.kind == "run" else 4
        what = "run " if n.kind == "run" else f"{n.type or 'version'} " + ("(this page) " if n.kind == "focus" else "")
        out.append(f'<a href="{escape(n.href)}" class="{escape(n.classes)}" data-id="{escape(n.id)}">'
                   f'<title>{escape(what + n.label)}</title>'
                   f'<rect x="{x0:.0f}" y="{n.row}" width="{w:.0f}" height="{NODE_H}" rx="{rx}"/>'
                   f'<text x="{x0 + w / 2:.0f}" y="{n.row + NODE_H / 2 + 4:.0f}" text-anchor="middle">'
                   f'{escape(n.label)}</text></a>')
    out.append("</svg>")
    return "\n".join(out)
