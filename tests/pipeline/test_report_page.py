"""report.html parsed (html.parser): each part is there, and its figures equal report.json.

The run is the one :func:`tests.pipeline.test_report.make_run` reports (the demo recipe on a
two-video synthetic split, masks written from the ground truth). The same page in a real
browser (headless Chromium): tests/pipeline/test_report_browser.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pipeline.orchestration.jobs import RunPlan
from tests.pipeline.test_report import make_run

VOID = {"meta", "img", "br", "hr", "input", "link"}


@dataclass
class Element:
    """A parsed element: its tag, attributes, children and the text directly inside it."""

    tag: str
    attrs: dict[str, str]
    children: list[Element] = field(default_factory=list)
    text: str = ""

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def iter(self) -> list[Element]:
        """This element and every element under it, in document order."""
        out = [self]
        for child in self.children:
            out += child.iter()
        return out

    def find_all(self, tag: str, cls: str | None = None, **attrs: str) -> list[Element]:
        return [
            e
            for e in self.iter()
            if e.tag == tag
            and (cls is None or cls in e.classes)
            and all(e.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def find(self, tag: str, cls: str | None = None, **attrs: str) -> Element:
        (found,) = self.find_all(tag, cls, **attrs)
        return found

    def all_text(self) -> str:
        return self.text + "".join(c.all_text() for c in self.children)


class TreeBuilder(HTMLParser):
    """Builds :class:`Element` trees; fails on an end tag that closes nothing open."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].text += data


def parse(page: str) -> Element:
    builder = TreeBuilder()
    builder.feed(page)
    builder.close()
    assert builder.stack == [builder.root], [e.tag for e in builder.stack]
    return builder.root


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunPlan, list[dict[str, Any]]]:
    return make_run(tmp_path_factory.mktemp("report-page"))


@pytest.fixture(scope="module")
def page(run: tuple[RunPlan, list]) -> tuple[Element, dict[str, Any]]:
    plan, _ = run
    run_dir = Path(plan.run_dir)
    report = json.loads((run_dir / "report.json").read_text())
    return parse((run_dir / "report.html").read_text()), report


def pct(value: float) -> str:
    return f"{100 * value:.1f}"


def test_sections_in_order_and_the_page_needs_nothing_online(
    page: tuple[Element, dict], run: tuple[RunPlan, list]
) -> None:
    doc, _ = page
    ids = [s.attrs.get("id") for s in doc.find_all("section")]
    assert ids == ["summary", "graph", "nodes", "stage-stage1", "stage-stage2", "stage-final"]
    assert not doc.find_all("script") and not doc.find_all("link")
    for element in doc.iter():
        for name in ("src", "href"):
            value = element.attrs.get(name, "")
            assert not value or value.startswith("data:"), (element.tag, value[:60])
    text = (Path(run[0].run_dir) / "report.html").read_text()
    assert "@import" not in text and "url(http" not in text
    summary = doc.find("section", id="summary")
    assert doc.find("span", "videos").text == "2"
    assert "final" in summary.find("p", "submission").all_text()
    report = json.loads((Path(run[0].run_dir) / "report.json").read_text())
    best = max(report["scores"], key=lambda n: report["scores"][n]["JF"])
    assert summary.find("p", "best").find("b").text == best


def test_node_table_is_in_graph_order_with_its_figures(page: tuple[Element, dict]) -> None:
    doc, report = page
    rows = doc.find("section", id="nodes").find("tbody").find_all("tr")
    assert [r.attrs["data-node"] for r in rows] == list(report["nodes"])
    per_expression: dict[str, int] = {}
    for row in report["per_expression"]:
        per_expression[row["node"]] = per_expression.get(row["node"], 0) + 1
    for row in rows:
        name = row.attrs["data-node"]
        node, score = report["nodes"][name], report["scores"][name]
        cell = {c: row.find("td", c).all_text() for c in ("node", "stage", "kind", "inputs")}
        assert cell == {
            "node": name,
            "stage": node["stage"],
            "kind": node["kind"],
            "inputs": ", ".join(node["inputs"]) or "-",
        }
        assert row.find("span", "jf").text == pct(score["JF"])
        assert row.find("td", "j").text == pct(score["J"])
        assert row.find("td", "f").text == pct(score["F"])
        assert row.find("td", "expressions").text == str(score["expressions"])
        assert row.find("td", "computed").text == str(report["computed"].get(name, 0))
        assert row.find("td", "cached").text == str(report["cached"][name])
        width = row.find("td", "bar").children[0].attrs["style"]
        assert width == f"width:{120 * score['JF']:.0f}px"
        dist = row.find("svg", "dist")
        assert dist.attrs["data-count"] == str(score["expressions"]) == str(per_expression[name])
        assert len(dist.find_all("line", "tick")) == score["expressions"]
    assert "submission" in rows[-1].classes


def test_recipe_graph_has_every_node_coloured_and_every_edge(page: tuple[Element, dict]) -> None:
    doc, report = page
    svg = doc.find("section", id="graph").find("svg", "graph")
    groups = svg.find_all("g", "node")
    assert [g.attrs["data-node"] for g in groups] == list(report["nodes"])
    fills = {}
    for g in groups:
        name = g.attrs["data-node"]
        assert g.attrs["data-jf"] == pct(report["scores"][name]["JF"])
        assert g.attrs["data-kind"] == report["nodes"][name]["kind"]
        fills[name] = g.find("rect").attrs["fill"]
    jf = {n: s["JF"] for n, s in report["scores"].items()}
    assert fills[min(jf, key=jf.__getitem__)] == "hsl(0,65%,72%)"  # lowest: red
    assert fills[max(jf, key=jf.__getitem__)] == "hsl(120,65%,72%)"  # highest: green
    edges = {(p.attrs["data-from"], p.attrs["data-to"]) for p in svg.find_all("path", "edge")}
    assert edges == {(i, n) for n, info in report["nodes"].items() for i in info["inputs"]}


def test_stage_sections_show_what_each_stage_helped_and_hurt(
    page: tuple[Element, dict], run: tuple[RunPlan, list]
) -> None:
    from pipeline.core.masks import MaskSet
    from pipeline.orchestration.splits import open_split

    doc, report = page
    plan, _ = run
    dataset = open_split(plan.dataset)
    jf = {(r["node"], r["video"], r["expression"]): (r["J"] + r["F"]) / 2
          for r in report["per_expression"]}  # fmt: skip
    expected = {"stage1": ("stage1", "v1"), "stage2": ("stage2", "v2"), "final": ("final", None)}
    scores = {n: s["JF"] for n, s in report["scores"].items()}
    expected["final"] = ("final", max(report["nodes"]["final"]["inputs"], key=scores.get))
    for stage, (output, baseline) in expected.items():
        section = doc.find("section", id=f"stage-{stage}")
        assert (section.attrs["data-output"], section.attrs["data-baseline"]) == (output, baseline)
        legend = section.find("div", "legend").all_text()
        assert "red" in legend and "green" in legend and "key frame" in legend
        deltas = {
            (v, e): jf[(output, v, e)] - jf[(baseline, v, e)] for (n, v, e) in jf if n == output
        }
        mean = sum(deltas.values()) / len(deltas)
        assert section.find("b", "mean-delta").text == f"{100 * mean:+.1f}"
        cards = section.find_all("div", "pick")
        helped = [c for c in cards if c.attrs["data-side"] == "helped"]
        hurt = [c for c in cards if c.attrs["data-side"] == "hurt"]
        gains = sorted((d for d in deltas.values() if d > 0), reverse=True)[:2]
        losses = sorted(d for d in deltas.values() if d < 0)[:2]
        assert [c.attrs["data-delta"] for c in helped] == [pct(d) for d in gains]
        assert [c.attrs["data-delta"] for c in hurt] == [pct(d) for d in losses]
        key_node = report["nodes"][output]["key_frames_from"]
        for card in cards:
            video, exp = card.attrs["data-video"], card.attrs["data-expression"]
            assert card.attrs["data-delta"] == pct(deltas[(video, exp)])
            assert dataset.expression(video, exp).text in card.find("p", "text").text
            frames = [th.attrs["data-frame"] for th in card.find("thead").find_all("th")[1:]]
            key = MaskSet(report["nodes"][key_node]["dir"]).key_frames(video).get(exp)
            if key is None:  # a vote without recorded key frames: none is marked
                assert card.attrs["data-key-frame"] == "" and not card.find_all("th", "key")
            else:
                assert card.attrs["data-key-frame"] == str(key)
                assert card.find("thead").find("th", "key").attrs["data-frame"] == str(key)
            rows = card.find("tbody").find_all("tr")
            shown = [r.attrs["data-node"] for r in rows]
            assert output in shown and baseline in shown
            assert [n for n in report["nodes"] if n in shown] == shown  # graph order
            for row in rows:
                tiles = [img.attrs["alt"].rsplit(" ", 1)[1] for img in row.find_all("img")]
                assert tiles == frames  # the same frames for every node
                if key is not None:
                    assert row.find("td", "key").find("img").attrs["alt"].endswith(f" {key}")
                assert row.attrs["data-jf"] == pct(jf[(row.attrs["data-node"], video, exp)])


def test_lsvos_report_rebuilds_the_same_page(run: tuple[RunPlan, list]) -> None:
    from pipeline.cli import main

    plan, _ = run
    page = Path(plan.run_dir) / "report.html"
    before = page.read_text()
    page.unlink()
    assert main(["report", plan.run_dir]) == 0
    assert page.read_text() == before


def test_lsvos_report_imports_no_heavy_module(run: tuple[RunPlan, list]) -> None:
    """Rebuilding a page needs no Prefect, Hydra or torch (a fresh interpreter tells)."""
    import subprocess
    import sys

    plan, _ = run
    probe = (
        "import sys\nfrom pipeline.cli import main\nrc = main(sys.argv[1:])\n"
        "print('HEAVY', sorted(m for m in ('torch', 'prefect', 'hydra', 'omegaconf') "
        "if m in sys.modules), rc)"
    )
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", probe, "report", plan.run_dir],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    assert proc.stdout.splitlines()[-1] == "HEAVY [] 0", proc.stdout + proc.stderr


def test_a_split_without_ground_truth_gets_the_graph_and_table_unscored(
    run: tuple[RunPlan, list], tmp_path: Path
) -> None:
    from pipeline.orchestration.report import render_html_report

    plan, _ = run
    report = json.loads((Path(plan.run_dir) / "report.json").read_text())
    report.update(scores={}, per_expression=[], submission=None)
    (tmp_path / "report.json").write_text(json.dumps(report))
    doc = parse(render_html_report(tmp_path).read_text())
    assert [s.attrs["id"] for s in doc.find_all("section")] == ["summary", "graph", "nodes"]
    assert "nothing scored" in doc.find("section", id="summary").all_text()
    rows = doc.find("section", id="nodes").find("tbody").find_all("tr")
    assert [r.attrs["data-node"] for r in rows] == list(report["nodes"])
    assert all(r.find("td", "none").text == "not scored" for r in rows)
    fills = {g.find("rect").attrs["fill"] for g in doc.find_all("g", "node")}
    assert fills == {"#e4e4e4"}


def test_a_cleared_cache_leaves_a_note_and_creates_nothing(
    run: tuple[RunPlan, list], tmp_path: Path
) -> None:
    from pipeline.orchestration.report import render_html_report

    plan, _ = run
    report = json.loads((Path(plan.run_dir) / "report.json").read_text())
    gone = tmp_path / "cleared" / "v1"
    report["nodes"]["v1"]["dir"] = str(gone)
    (tmp_path / "report.json").write_text(json.dumps(report))
    doc = parse(render_html_report(tmp_path).read_text())
    assert not gone.exists()
    rows = doc.find("section", id="stage-stage1").find_all("tr", data_node="v1")
    assert rows and all("no mask set" in r.find("td", "none").text for r in rows)
    assert all(r.find_all("img") for r in doc.find_all("tr", data_node="stage1", cls="output"))
