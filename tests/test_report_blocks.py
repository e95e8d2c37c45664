"""Reports built from typed blocks (Section, Text, Table, Figure) and their one Markdown renderer."""

import json
from dataclasses import dataclass, replace

import pytest

import twinnet.registry
from twinnet import TwinnetError
from twinnet.config import BaseConfig
from twinnet.registry import Experiment, register
from twinnet.report.blocks import Figure, Section, Table, Text, markdown_table, render_markdown
from twinnet.report.build import write_report

PNG = b"\x89PNG\r\n\x1a\n"


def test_sections_nest_one_heading_level_deeper_each():
    text = render_markdown([Section("Outer", [Text("intro"), Section("Inner", [Text("deep")]), Text("after")]),
                            Section("Next", [])])
    assert text == "## Outer\n\nintro\n\n### Inner\n\ndeep\n\nafter\n\n## Next"
    assert render_markdown([Section("Title", [Section("Sub", [])])], level=1) == "# Title\n\n## Sub"
    with pytest.raises(ValueError, match="nested too deep"):
        render_markdown([Section("a", [Section("b", [])])], level=6)


def test_a_table_aligns_its_numeric_columns_right():
    text = render_markdown([Table(["name", "count", "share"], [["a", 1, "50%"], ["b|c", 22, "50%"]], {1, 2},
                                  caption="Counts")])
    assert text.splitlines() == ["| name | count | share |", "| --- | ---: | ---: |", "| a | 1 | 50% |",
                                 "| b\\|c | 22 | 50% |", "", "*Table: Counts*"]  # a | in a cell stays in it
    assert text.split("\n\n")[0] == markdown_table(["name", "count", "share"], [["a", 1, "50%"], ["b|c", 22, "50%"]],
                                                   {1, 2})
    with pytest.raises(ValueError, match="row 0 has 1 cells"):
        Table(["a", "b"], [["x"]])
    with pytest.raises(ValueError, match="numeric columns"):
        Table(["a", "b"], [], {2})


def test_a_figure_shows_its_png_and_caption_and_needs_a_caption():
    text = render_markdown([Figure("loss.png", "Training loss over steps")])
    assert text == "![loss.png](loss.png)\n\n*Figure: Training loss over steps*"
    for caption in ("", "   "):
        with pytest.raises(ValueError, match="no caption"):
            Figure("loss.png", caption)
    for file in ("loss.svg", "/tmp/loss.png", "../loss.png"):
        with pytest.raises(ValueError):
            Figure(file, "a caption")


def test_anything_else_is_not_a_block():
    with pytest.raises(TypeError, match="not a report block"):
        render_markdown([Text("fine"), {"markdown": "not a block"}])


@dataclass(frozen=True)
class _TinyConfig(BaseConfig):
    width: int = 3


@pytest.fixture
def block_experiment(tmp_path):
    """A throwaway experiment whose report is blocks, and a finished run of it (its files written by hand);
    tests may replace its registry entry, which is removed afterwards whatever it then holds."""
    calls = []

    def figures(path):
        calls.append("figures")
        (path / "curve.png").write_bytes(PNG)

    def report(path):
        calls.append("report" if (path / "curve.png").exists() else "report, no curve.png")
        return [
            Section("Results", [
                Text("What the run found."),
                Table(["model", "accuracy"], [["tiny", "97.00%"]], {1}, caption="Final accuracy"),
                Section("Curves", [Figure("curve.png", "Loss against steps")]),
            ]),
            Section("Notes", [Text("Nothing else.")]),
        ]

    name = "test-blocks-throwaway"
    register(Experiment(name=name, description="an experiment of the report-blocks tests", config_cls=_TinyConfig,
                        run=lambda *args: {}, report=report, figures=figures))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"experiment": name, "quick": False,
                                                 "config": {"seed": 0, "width": 3}}))
    (run / "env.json").write_text(json.dumps({"command": "twinnet run test-blocks-throwaway", "started": "today"}))
    (run / "summary.json").write_text("{}")
    try:
        yield run, calls, name
    finally:
        twinnet.registry.EXPERIMENTS.pop(name)


def test_write_report_renders_an_experiments_blocks_in_order(block_experiment):
    run, calls, _ = block_experiment
    text = write_report(run).read_text()
    assert calls == ["figures", "report"]
    expected = [
        "# test-blocks-throwaway: an experiment of the report-blocks tests",
        "Command: `twinnet run test-blocks-throwaway`",
        "## Results", "What the run found.",
        "| model | accuracy |\n| --- | ---: |\n| tiny | 97.00% |", "*Table: Final accuracy*",
        "### Curves", "![curve.png](curve.png)", "*Figure: Loss against steps*",
        "## Notes", "Nothing else.",
        "## Configuration", "| field | value |\n| --- | --- |\n| `seed` | `0` |\n| `width` | `3` |",
        "## Environment", "| `twinnet run test-blocks-throwaway` |",
        "## Files", "`config.json` (configuration)", "`*.png` (figures)",
    ]
    positions = [text.find(part) for part in expected]
    assert -1 not in positions, [p for p, at in zip(expected, positions) if at == -1]
    assert positions == sorted(positions)
    assert "## Model structure" not in text  # this run has no structure.json
    assert text.endswith(".\n") and "\n\n\n" not in text


def test_a_report_that_shows_a_missing_figure_is_refused(block_experiment):
    run, calls, name = block_experiment
    experiment = twinnet.registry.EXPERIMENTS[name]
    twinnet.registry.EXPERIMENTS[name] = replace(experiment, figures=None)  # nothing draws curve.png
    with pytest.raises(TwinnetError, match="curve.png, which is not in the run directory"):
        write_report(run)
    assert calls == ["report, no curve.png"] and not (run / "report.md").exists()


def test_write_report_still_takes_markdown_strings(block_experiment):
    run, _, name = block_experiment
    experiment = twinnet.registry.EXPERIMENTS[name]
    twinnet.registry.EXPERIMENTS[name] = replace(experiment, figures=None,
                                                 report=lambda path: ["## Old style\n\nA paragraph.", ""])
    (run / "structure.json").write_text(json.dumps({"MLP": {"numpy": {"total": 102, "rows": [
        {"name": "0", "kind": "Linear", "kernel": "", "stride": "", "padding": "", "input_shape": [2],
         "output_shape": [20], "params": 60}]}}}))
    text = write_report(run).read_text()
    assert "Command: `twinnet run test-blocks-throwaway`  \nStarted: today\n\n## Old style\n\nA paragraph.\n\n" \
           "## Model structure\n\n### MLP — numpy engine\n\n| layer | kind |" in text
    # a structure.json of an older twinnet: the columns it lacks stay blank
    assert "| 0 | Linear |  |  |  | (2,) | (20,) |  |  | 60 |  |  |  |\n\nTotal parameters: **102**\n\n## Configuration" in text


def test_the_html_page_holds_every_section_table_and_figure_self_contained(tmp_path):
    """report.html renders the same blocks as report.md: every heading, table cell and caption, each
    figure embedded (its exact bytes), nothing fetched from elsewhere, run values escaped."""
    import base64
    from html.parser import HTMLParser

    from twinnet.report import html as report_html
    from twinnet.report.blocks import Figure, Section, Table, Text

    png = b"\x89PNG\r\n\x1a\n" + bytes(range(40))
    (tmp_path / "curve.png").write_bytes(png)
    blocks = [Section("Run <one>", [
        Text("Command: `twinnet run x --set a=<b>`  \nStarted: **now**, see [its seed](seed-0/report.md)\n\n- one\n- two"),
        Section("Results", [Table(["name", "value"], [["acc", "91.0%"], ["path", "/tmp/<x>"]], {1}, "the figures"),
                            Figure("curve.png", "Loss against *steps*.")]),
    ])]

    class Collect(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.text, self.srcs = [], [], []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            self.srcs += [v for k, v in attrs if k in ("src", "href") and tag in ("img", "link", "script")]

        def handle_data(self, data):
            self.text.append(data)

    page = report_html.page(blocks, tmp_path, "Run one")
    parsed = Collect()
    parsed.feed(page)
    text = "".join(parsed.text)
    assert parsed.tags.count("h1") == 1 and parsed.tags.count("h2") == 1 and parsed.tags.count("table") == 1
    assert "Run <one>" in text and "/tmp/<x>" in text and "twinnet run x --set a=<b>" in text  # escaped, shown
    assert "<x>" not in page.replace("&lt;x&gt;", "")  # never markup
    assert parsed.tags.count("li") == 2 and "strong" in parsed.tags and "code" in parsed.tags and "em" in parsed.tags
    assert "Figure: Loss against steps." in text and "Table: the figures" in text
    (src,) = parsed.srcs
    assert src.startswith("data:image/png;base64,") and base64.b64decode(src.split(",", 1)[1]) == png
    assert 'href="seed-0/report.html"' in page and "http" not in page


def test_write_report_writes_the_html_beside_the_markdown(tmp_path):
    from twinnet.cli import main

    out = tmp_path / "run"
    assert main(["run", "mlp-compare", "--quick", "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    figures = [line for line in md.splitlines() if line.startswith("![")]
    assert figures and page.count("data:image/png;base64,") == len(figures)
    for heading in (line.lstrip("#").strip() for line in md.splitlines() if line.startswith("#")):
        assert heading.split("`")[0][:20] in page


def test_relocated_blocks_point_into_their_folder_and_leave_the_rest_alone():
    from twinnet.report.blocks import Figure, Section, Table, Text, relocated

    blocks = [Section("a", [Figure("curves.png", "c"),
                            Text("see [course](course/report.md), [web](https://x.org/a), [top](#a), [abs](/tmp/r)"),
                            Table(["run", "n"], [["[b](b/report.md)", 3]], {1}, "cap")])]
    (moved,) = relocated(blocks, "cnn-ablation")
    figure, text, table = moved.blocks
    assert figure == Figure("cnn-ablation/curves.png", "c") and moved.title == "a"
    assert text.markdown == ("see [course](cnn-ablation/course/report.md), [web](https://x.org/a), [top](#a), "
                             "[abs](/tmp/r)")
    assert table.rows == [["[b](cnn-ablation/b/report.md)", 3]] and table.numeric == {1} and table.caption == "cap"
    assert blocks[0].blocks[0].file == "curves.png"  # the originals unchanged


def test_html_links_to_other_runs_reports_open_their_html_and_scripts_are_never_linked():
    from twinnet.report.html import inline

    assert inline("[seed 1](seed-1/report.md)") == '<a href="seed-1/report.html">seed 1</a>'
    assert inline("[it](report.md)") == '<a href="report.html">it</a>'
    assert inline("[notes](notes.md)") == '<a href="notes.md">notes</a>'  # only reports have an HTML twin
    assert inline("[x](https://example.org/report.md)") == '<a href="https://example.org/report.md">x</a>'
    assert inline("[x](javascript:alert(1))").startswith('<a href="#">')
