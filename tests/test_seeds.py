"""--seeds: one experiment over several seeds, every figure as mean ± std with the per-seed values."""

import json
import shutil

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
    for bad, named in (("0,1,1", "seed 1 given twice"), ("0-2,1,2", "seeds 1, 2 given twice"), ("7", "only 1 seed"),
                       (" , ", "no seed;"),
                       ("0,4294967296", "seed 4294967296 is outside"), ("-1,2", "seed -1 is outside"),
                       ("3-1", "the range 3-1 runs backwards; write it low-high \\(1-3\\)"),
                       ("1--3", "the range 1--3 ends at a negative seed; seeds are in \\[0, 2\\*\\*32\\)")):
        with pytest.raises(TwinnetError, match=named):
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
    import shutil

    shutil.rmtree(out / "seed-1")  # a seed's folder deleted: its figures stand, its dead link goes, and it is said
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    again = (out / "report.md").read_text()
    assert "[seed 0](seed-0/report.md)" in again and "(seed-1/report.md)" not in again
    assert "the folder of seed-1 is missing from this group's folder" in again and "`results.moons/numpy.test_acc`" in again
    assert "seed-1 missing" in capsys.readouterr().err


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
    assert main(["run", "mlp-compare", "--resume", str(out), "--seed", "5"]) == 2  # its own seeds only
    assert "drop --out, --quick and --seed" in capsys.readouterr().err
    assert main(["run", "mlp-compare", "--resume", str(out), "--show-config"]) == 0  # what its seeds continue with
    shown = capsys.readouterr().out
    assert "datasets = ['moons']" in shown and "seed = 0" in shown
    assert main(["run", "mlp-compare", "--resume", str(out)]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "seed-0").iterdir()} == first  # not trained again
    assert _json(out / "summary.json")["seeds"] == [0, 1] and (out / "seed-1" / "summary.json").exists()
    assert _json(out / "seed-1" / "config.json")["config"]["datasets"] == ["moons"]  # the group's settings


def test_a_group_refused_at_its_first_seed_leaves_nothing(tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("TWINNET_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "runs" / "g"
    assert main(["run", "mnist-numpy", "--quick", "--seeds", "0,1", "--data-dir", str(empty), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train-images-idx3-ubyte" in err[0] and not (tmp_path / "runs").exists()


@pytest.fixture
def group(tmp_path):
    out = tmp_path / "group"
    assert main(["run", "mlp-compare", "--seeds", "0,1", "--out", str(out), *ARGS]) == 0
    return out


def test_a_damaged_group_config_is_refused_before_anything_is_touched(group, capsys):
    cfg = _json(group / "config.json")
    (group / "config.json").write_text(json.dumps({**cfg, "overrides": ["bogus=1"]}))
    (group / "seed-1" / "summary.json").unlink()  # as if seed 1 had been interrupted
    before = {p: p.read_bytes() for p in group.rglob("*") if p.is_file()}
    assert main(["run", "mlp-compare", "--resume", str(group)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--set bogus: unknown key" in err[0]
    assert {p: p.read_bytes() for p in group.rglob("*") if p.is_file()} == before  # seed-1 and all else kept
    (group / "config.json").write_text(json.dumps({**cfg, "seeds": [0]}))
    assert main(["run", "mlp-compare", "--resume", str(group)]) == 2
    assert "config.json is damaged" in capsys.readouterr().err


def test_a_diverged_seed_fails_the_group_every_time(group, capsys):
    summary = _json(group / "seed-1" / "summary.json")
    (group / "seed-1" / "summary.json").write_text(json.dumps({**summary, "outcome": "diverged",
                                                                "diverged_at_step": 4}))
    (group / "summary.json").unlink()
    for _ in range(2):
        assert main(["run", "mlp-compare", "--resume", str(group)]) == 1
        assert "seed 1 diverged at step 4" in capsys.readouterr().err
    assert not (group / "summary.json").exists()


def test_a_seed_stopped_while_writing_its_report_gets_it_on_resume(group, capsys):
    (group / "seed-0" / "report.md").unlink()
    (group / "summary.json").unlink()
    assert main(["run", "mlp-compare", "--resume", str(group)]) == 0
    assert (group / "seed-0" / "report.md").exists() and (group / "summary.json").exists()


def test_a_finished_seed_whose_summary_is_gone_is_named_and_the_advice_given_works(tmp_path, capsys):
    group = tmp_path / "group"
    argv = ["run", "mlp-compare", "--quick", "--set", "datasets=moons", "--threads", "1"]
    assert main([*argv, "--seeds", "0,1", "--out", str(group)]) == 0
    (group / "seed-1" / "summary.json").unlink()
    assert main(["run", "mlp-compare", "--resume", str(group)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "seed-1/summary.json is missing, though results.jsonl lists seed-1 as finished" in err[-1]
    lines = (group / "results.jsonl").read_text().splitlines()
    (group / "results.jsonl").write_text("".join(line + "\n" for line in lines if json.loads(line)["seed"] != 1))
    assert main(["run", "mlp-compare", "--resume", str(group)]) == 0  # as the message says: that seed again
    assert [r["dataset"] for r in _json(group / "seed-1" / "summary.json")["results"]] == ["moons", "moons"]
    assert len((group / "results.jsonl").read_text().splitlines()) == 2
    # the seed's whole folder gone: named as missing, and not counted among the finished seeds first
    shutil.rmtree(group / "seed-1")
    (group / "summary.json").unlink()
    capsys.readouterr()
    assert main(["run", "mlp-compare", "--resume", str(group)]) == 2
    err = capsys.readouterr().err
    assert "seed-1 is missing, though results.jsonl lists seed-1 as finished; restore that folder, or delete its " \
        "line of results.jsonl to run that seed again" in err and "already finished" not in err
