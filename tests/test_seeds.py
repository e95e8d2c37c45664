"""--seeds: one experiment over several seeds, every figure as mean ± std with the per-seed values."""

import json

import numpy as np
import pytest

from twinnet import TwinnetError
from twinnet.cli import main
from twinnet.seeds import parse_seeds

ARGS = ["--quick", "--set", "datasets=moons", "--threads", "1"]


def _json(path):
    return json.loads(path.read_text())


def test_seeds_parse_lists_and_ranges_and_refuse_the_rest():
    assert parse_seeds("0,1,2") == [0, 1, 2] and parse_seeds("3-5") == [3, 4, 5] and parse_seeds("0-1,7") == [0, 1, 7]
    for bad in ("", "7", "0,0", "a,b", "-1,2", "1-", "0,4294967296"):
        with pytest.raises(TwinnetError, match="--seeds"):
            parse_seeds(bad)


def test_a_group_reports_every_figure_as_mean_and_std_over_its_seeds(tmp_path, capsys):
    out = tmp_path / "group"
    assert main(["run", "mlp-compare", "--seeds", "0,1", "--out", str(out), *ARGS]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1] == str(out) and printed[-2].startswith("mlp-compare over seeds 0,1: ")
    starts = [k for k, line in enumerate(printed) if line.startswith("seed ")]  # each seed's own headline first
    assert [printed[k].split(":")[0] for k in starts] == ["seed 0", "seed 1"]
    runs = [_json(out / f"seed-{s}" / "summary.json") for s in (0, 1)]
    assert [_json(out / f"seed-{s}" / "config.json")["config"]["seed"] for s in (0, 1)] == [0, 1]
    figures = _json(out / "summary.json")["figures"]
    for engine in ("numpy", "torch"):
        values = [next(r["test_acc"] for r in run["results"] if r["engine"] == engine) for run in runs]
        f = figures[f"results.moons/{engine}.test_acc"]
        assert f["values"] == values and f["mean"] == pytest.approx(np.mean(values))
        assert f["std"] == pytest.approx(np.std(values)) and (f["min"], f["max"]) == (min(values), max(values))
    assert figures["agreement.moons.steps"]["values"] == [runs[0]["agreement"]["moons"]["steps"]] * 2
    report = (out / "report.md").read_text()
    assert "[seed 0](seed-0/report.md)" in report and "[seed 1](seed-1/report.md)" in report
    assert "`results.moons/numpy.test_acc`" in report and " ± " in report
    assert all((out / f"seed-{s}" / "report.md").exists() for s in (0, 1))  # each seed a complete run
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 0 and (out / "report.md").read_text().split("\n")[0] == report.split("\n")[0]


def test_seeds_and_seed_together_are_one_line(tmp_path, capsys):
    assert main(["run", "mlp-compare", "--seeds", "0,1", "--seed", "3", "--out", str(tmp_path / "g"), *ARGS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "drop --seed" in err[0] and not (tmp_path / "g").exists()


def test_an_interrupted_group_resumes_keeping_its_finished_seeds(tmp_path, capsys, monkeypatch):
    import twinnet.runner

    real = twinnet.runner.run_experiment

    def interrupt_seed_1(name, overrides=(), **kwargs):
        if kwargs.get("seed") == 1:
            raise KeyboardInterrupt
        return real(name, overrides, **kwargs)

    monkeypatch.setattr(twinnet.runner, "run_experiment", interrupt_seed_1)
    out = tmp_path / "group"
    assert main(["run", "mlp-compare", "--seeds", "0,1", "--out", str(out), *ARGS]) == 130
    assert f"twinnet run mlp-compare --resume {out}" in capsys.readouterr().err
    first = {p.name: p.stat().st_mtime_ns for p in (out / "seed-0").iterdir()}
    assert not (out / "summary.json").exists() and not (out / "seed-1").exists()
    monkeypatch.setattr(twinnet.runner, "run_experiment", real)
    assert main(["run", "mlp-compare", "--resume", str(out), "--set", "lr=0.5"]) == 2  # saved settings only
    assert main(["run", "mlp-compare", "--resume", str(out)]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "seed-0").iterdir()} == first  # not trained again
    assert _json(out / "summary.json")["seeds"] == [0, 1] and (out / "seed-1" / "summary.json").exists()
    assert _json(out / "seed-1" / "config.json")["config"]["datasets"] == ["moons"]  # the group's settings
