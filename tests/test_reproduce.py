"""``twinnet reproduce``: the assignment's runs as jobs of one sweep, one report over them, resumable."""

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fake_data import write_data_dir
from twinnet.cli import main


def test_the_parts_choose_the_jobs_and_full_adds_seeds_to_the_headline_presets():
    from twinnet.experiments.reproduce import PARTS, ReproduceConfig

    jobs = ReproduceConfig().jobs()
    assert [j.key for _, j in jobs] == [key for part in PARTS.values() for key, _, _ in part[1]]
    cnn = [(p, j) for p, j in ReproduceConfig(parts="cnn", level="full").jobs()]
    assert {p for p, _ in cnn} == {"cnn"}
    keys = [j.key for _, j in cnn]
    assert keys[keys.index("cnn-vgg-best"):keys.index("cnn-vgg-best") + 3] == [
        "cnn-vgg-best", "cnn-vgg-best-seed1", "cnn-vgg-best-seed2"]
    assert keys[keys.index("cnn-ablation"):keys.index("cnn-ablation") + 3] == [
        "cnn-ablation", "cnn-ablation-seed1", "cnn-vgg-best"]  # the ladder's rungs over 2 seeds
    seeds = {j.key: j.seed for _, j in ReproduceConfig(parts="cnn", level="full", seed=5).jobs()}
    assert (seeds["mnist-numpy"], seeds["mnist-numpy-seed2"], seeds["cnn-vgg"]) == (5, 7, 5)
    vgg = next(j for _, j in jobs if j.key == "cnn-vgg")  # in both engines
    assert (vgg.experiment, vgg.values) == ("engine-compare", {"preset": "cnn-vgg"})
    unverified = {j.key: j.values for _, j in ReproduceConfig(verify=False).jobs()}
    assert unverified["mnist-numpy"]["verify"] is False and "verify" not in unverified["palindrome-sweep"]
    assert unverified["cnn-vgg"]["verify"] is False  # engine-compare passes it on to its runs
    with pytest.raises(ValueError, match="unknown part"):
        ReproduceConfig(parts="mlp,cnm")


def test_every_job_has_a_relative_cost_so_the_longest_start_first_and_the_time_left_weighs_them():
    from twinnet.experiments.reproduce import COSTS, PARTS, ReproduceConfig
    from twinnet.sweep import time_left

    assert set(COSTS) == {key for _, jobs in PARTS.values() for key, _, _ in jobs}  # none forgotten
    full = {j.key: j.cost for _, j in ReproduceConfig(level="full").jobs()}
    assert max(full, key=full.get) == "cnn-ablation" and full["cnn-vgg-best-seed2"] == full["cnn-vgg-best"]
    # after mlp-compare alone, the rest of the mlp part is about 1,000x what it took, not 4x
    rest = sum(c for k, c in full.items() if k.startswith("mlp-cifar"))
    assert time_left(0.6, full["mlp-compare"], rest) == f"about {0.6 * rest / full['mlp-compare'] / 60:.0f} min left"
    assert {j.cost for _, j in ReproduceConfig(level="full").jobs(quick=True)} == {1.0}  # --quick: all alike


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """``twinnet reproduce --quick``, every part, on small fake MNIST and CIFAR-10: (folder, command)."""
    root = tmp_path_factory.mktemp("reproduce")
    data, out = root / "data", root / "repro"
    write_data_dir(data)
    args = ["reproduce", "--quick", "--data-dir", str(data), "--out", str(out), "--threads", "1", "--no-verify"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TWINNET_CACHE_DIR", str(root / "cache"))
        assert main(args) == 0
    return out, args


@pytest.mark.slow
def test_reproduce_quick_writes_one_report_over_every_part(quick_run):
    from twinnet.experiments.reproduce import PARTS

    out, _ = quick_run
    report = (out / "report.md").read_text()
    titles = re.findall(r"^## (.+)$", report, flags=re.M)
    assert titles[:5] == ["Overview"] + [title for title, _ in PARTS.values()]
    runs = [key for _, jobs in PARTS.values() for key, _, _ in jobs]
    for run in runs:  # each a complete run of its own, linked from the overview, its findings shown here
        assert (out / run / "report.md").is_file() and f"[{run}]({run}/report.md)" in report
        assert re.search(rf"^### {re.escape(run)}: ", report, flags=re.M)
    figures = re.findall(r"!\[[^]]*\]\(([^)]+)\)", report)
    assert all((out / f).is_file() for f in figures)
    assert {f.split("/")[0] for f in figures} >= {"mlp-compare", "cnn-vgg", "palindrome-sweep", "engine-check"}
    assert "im2col X (" in report and "BPTT" in report  # requirement 2's traced steps, for the CNN and the RNN
    # the MLP on CIFAR-10, the CNN and the RNN across engines, as the MLP on toy data: same weights and batches,
    # curves, agreement, time
    assert report.count("#### NumPy against PyTorch, the whole run") == 3
    assert {"mlp-cifar/engines.png", "cnn-vgg/engines.png", "rnn-engines/engines.png"} <= set(figures)
    assert "cnn-vgg/numpy/curves.png" in figures and "cnn-vgg/torch/curves.png" in figures
    for run in ("mlp-cifar", "cnn-vgg", "rnn-engines"):
        s = json.loads((out / run / "summary.json").read_text())
        assert s["steps_compared"] > 0 and s["first_rel_loss_diff"] < 1e-5  # float32: one step, rounding alone
    assert report.count("in the NumPy engine and") == 3  # and the time each took
    # requirement 3: sentences from the numbers, against the published figures too
    assert "Published for the same work: 84.00% (the reduced VGG with Adam" in report
    assert "--quick run" in report and "The vanilla RNN " in report
    assert "The course's published vanilla-RNN runs collapse somewhere between T=12 and T=20" in report
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(figures)
    summary = json.loads((out / "summary.json").read_text())
    assert [r["job"] for r in summary["runs"]] == runs
    compare = next(r for r in summary["runs"] if r["job"] == "mlp-compare")["headline"]
    assert compare.startswith("largest relative difference between the engines' loss curves") and "\n" not in compare


@pytest.mark.slow
def test_reproduce_again_trains_nothing_twice_and_refuses_the_wrong_folder(quick_run, tmp_path, capsys, monkeypatch):
    out, args = quick_run
    stamp = (out / "mlp-cifar" / "numpy" / "metrics.jsonl").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0
    assert "13 runs already finished, 0 to run" in capsys.readouterr().err
    assert (out / "mlp-cifar" / "numpy" / "metrics.jsonl").stat().st_mtime_ns == stamp
    # the wrong folder, or the wrong size, is refused before anything is written
    assert main(["reproduce", "--parts", "engine", "--out", str(out)]) == 2
    assert "holds a quick reproduce run; add --quick" in capsys.readouterr().err
    assert main(["reproduce", "--quick", "--out", str(out / "mlp-cifar")]) == 2
    assert "holds another run (engine-compare), not a reproduce run" in capsys.readouterr().err
    # --full is the whole folder's, and a resume drops no part: --full --parts mlp would make every part full
    config = (out / "config.json").read_text()
    assert main(args + ["--full", "--parts", "mlp"]) == 2
    assert "holds the parts mlp,cnn,rnn,engine, and --full makes every part of a folder full" in \
        capsys.readouterr().err and (out / "config.json").read_text() == config
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "config.json").write_text("{")
    assert main(["reproduce", "--quick", "--out", str(damaged)]) == 2
    assert "config.json is damaged" in capsys.readouterr().err and (damaged / "config.json").read_text() == "{"
    # a finished run whose summary is gone: named, with how to run it again, not read and failed on afterwards
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "engine-check" / "summary.json").unlink()
    assert main([str(copy) if a == str(out) else a for a in args]) == 2
    err = capsys.readouterr().err
    assert "engine-check/summary.json is missing, though results.jsonl lists engine-check as finished" in err, err
    lines = (copy / "results.jsonl").read_text().splitlines()
    (copy / "results.jsonl").write_text("".join(line + "\n" for line in lines if '"engine-check"' not in line))
    assert main([str(copy) if a == str(out) else a for a in args]) == 0  # as the message says: that run again
    assert (copy / "engine-check" / "summary.json").is_file()
    assert main(["reproduce", "--quick", "--parts", "gan", "--out", str(tmp_path / "new")]) == 2
    assert "unknown part" in capsys.readouterr().err and not (tmp_path / "new").exists()
    # data that is not there is named before anything trains
    monkeypatch.delenv("TWINNET_DATA_DIR", raising=False)
    assert main(["reproduce", "--quick", "--parts", "rnn,mlp", "--out", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err
    assert "no CIFAR-10 data directory given" in err and "mlp-cifar, mlp-cifar-best read it" in err
    assert not (tmp_path / "new" / "palindrome-sweep").exists()


@pytest.mark.slow
def test_full_adds_seeds_and_reports_the_headline_presets_as_mean_and_std(quick_run, tmp_path, monkeypatch,
                                                                          capsys):
    """A folder of the mlp part made --full (--quick: its runs at smoke-test size), then resumed with another
    part: that part joins the folder's, and the first part's runs stay in its report."""
    out, args = quick_run
    full = tmp_path / "full"
    monkeypatch.setenv("TWINNET_CACHE_DIR", str(out.parent / "cache"))
    at = args.index("--out")
    args = args[:at + 1] + [str(full)] + args[at + 2:]
    assert main(args + ["--parts", "mlp"]) == 0
    assert main(args + ["--full"]) == 0  # the folder's parts, mlp, at full size
    summary = json.loads((full / "summary.json").read_text())
    [group] = summary["over_seeds"]  # only the mlp part's headline preset ran with its seeds
    runs = ["mlp-cifar-best", "mlp-cifar-best-seed1", "mlp-cifar-best-seed2"]
    accs = [json.loads((full / r / "summary.json").read_text())["test_acc"] for r in runs]
    assert group["job"] == "mlp-cifar-best" and group["seeds"] == [0, 1, 2]
    assert group["figures"]["test_acc"]["values"] == accs
    assert group["figures"]["test_acc"]["mean"] == pytest.approx(sum(accs) / 3)
    assert group["figures"]["test_acc"]["std"] == pytest.approx(float(np.std(accs)))
    report = (full / "report.md").read_text()
    mean, std = 100 * group["figures"]["test_acc"]["mean"], 100 * group["figures"]["test_acc"]["std"]
    assert f"| mlp-cifar-best | 0, 1, 2 | {mean:.2f}% ± {std:.2f}% |" in report
    capsys.readouterr()
    assert main(args + ["--parts", "engine"]) == 0  # a resume adds a part; it drops none
    assert "parts engine added to the folder's mlp" in capsys.readouterr().err
    assert json.loads((full / "config.json").read_text())["config"]["parts"] == "mlp,engine"
    report = (full / "report.md").read_text()
    assert f"| mlp-cifar-best | 0, 1, 2 | {mean:.2f}% ± {std:.2f}% |" in report and "### engine-check: " in report


@pytest.mark.slow
def test_a_folder_not_finished_reports_its_finished_runs_and_lists_the_rest(quick_run, tmp_path, capsys):
    out, _ = quick_run
    partial = tmp_path / "partial"
    shutil.copytree(out, partial)
    # as if stopped during the palindrome sweep: no summary of its own, that run's summary not written yet
    (partial / "summary.json").unlink()
    (partial / "palindrome-sweep" / "summary.json").unlink()
    (partial / "rnn-engines" / "summary.json").write_text('{"outcome": "dive')  # cut short as it was written
    (partial / "engine-check" / "summary.json").write_text('{"outcome": "diverged"}')  # the sweep reruns it
    (partial / "rnn-gradients" / "report.md").unlink()  # summary written, report not yet: still finishing
    for name in ("report.md", "report.html"):
        (partial / name).unlink()
    capsys.readouterr()
    assert main(["report", str(partial)]) == 0
    report = (partial / "report.md").read_text()
    assert "**In progress: 9 of 13 runs finished**" in report
    assert f"`twinnet reproduce --quick --no-verify --out {partial}` continues it" in report
    for part, job, experiment in [("rnn", "palindrome-sweep", "palindrome-sweep"), ("rnn", "rnn-engines", "engine-compare"),
                                  ("engine", "engine-check", "engine-check"), ("rnn", "rnn-gradients", "rnn-gradients")]:
        finished = (partial / job / "results.jsonl").read_text().count("\n") if (partial / job / "results.jsonl").exists() else 0
        so_far = f" ({finished} of its runs finished so far)" if finished else ""  # a sweep's own runs
        assert f"| {part} | {job} | {experiment} | 0 | not finished yet{so_far} |" in report
    assert "| palindrome-sweep | palindrome-sweep | 0 | not finished yet (" in report  # its runs had all finished
    assert "[mlp-compare](mlp-compare/report.md)" in report and "### mlp-compare: " in report
    assert "### palindrome-sweep: " not in report and "### palindrome-sweep-best: " in report
    rows = re.findall(r"^\| (?:mlp|cnn|rnn|engine) \| \[?([a-z-]+)", report, flags=re.M)
    assert rows.index("palindrome-sweep") == rows.index("palindrome-sweep-best") - 1  # in the jobs' order
    assert "In progress" in (partial / "report.html").read_text()
    assert not (partial / "summary.json").exists()  # a report in progress finishes nothing
    # a run of an experiment without a report in progress says how to finish it
    (partial / "mlp-cifar-best" / "summary.json").unlink()
    assert main(["report", str(partial / "mlp-cifar-best")]) == 2
    assert "finish it with `twinnet run mlp-cifar-best --resume" in capsys.readouterr().err


# recorded by the page as it loads: script errors, failed resources, console.error calls, and every image's size
_PROBE_HEAD = """<script>window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message || (e.target && e.target.src) || e)), true);
const __ce = console.error; console.error = (...a) => { window.__errors.push(a.join(" ")); __ce(...a); };</script>"""
_PROBE_TAIL = """<script>window.addEventListener("load", () => document.body.setAttribute("data-probe", JSON.stringify({
  images: [...document.images].map(i => [i.naturalWidth, i.naturalHeight]),
  headings: [...document.querySelectorAll("h2")].map(h => h.textContent), errors: window.__errors})));</script>"""


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="no Chromium here (.ci/run installs Debian's chromium package)")
def test_the_html_report_loads_in_a_real_browser_with_every_image_and_section(quick_run, tmp_path):
    from twinnet.experiments.reproduce import PARTS

    out, _ = quick_run
    page = (out / "report.html").read_text()
    probe = tmp_path / "probe.html"  # the report as it is, with the probe's two scripts around it
    probe.write_text(page.replace("<head>", "<head>" + _PROBE_HEAD, 1).replace("</body>", _PROBE_TAIL + "</body>", 1))
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000"]
    dom = subprocess.run([_chromium(), *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True,
                         timeout=240).stdout
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found, "the page never finished loading"
    result = json.loads(html.unescape(found.group(1)))
    assert result["errors"] == []
    assert len(result["images"]) == page.count("<img") and all(w > 0 and h > 0 for w, h in result["images"])
    assert result["headings"][:5] == ["Overview"] + [title for title, _ in PARTS.values()]
    # the screenshot, kept as the test's artefact
    shots = Path(os.environ.get("TWINNET_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / "reproduce-quick-report.png"
    subprocess.run([_chromium(), *flags, "--window-size=1280,2400", f"--screenshot={shot}", (out / "report.html").as_uri()],
                   capture_output=True, timeout=240)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_engine_check_passes_the_twins_and_names_a_model_whose_numpy_layer_is_wrong(tmp_path, monkeypatch, capsys):
    from twinnet.numpy_nn.activation import ReLU

    out = tmp_path / "ok"
    assert main(["run", "engine-check", "--set", "models=mlp,mnist-cnn,palindrome-lstm", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["passed"] and s["worst"] < 1e-10 and [r["model"] for r in s["rows"]] == ["mlp", "mnist-cnn",
                                                                                       "palindrome-lstm"]
    said = (out / "report.md").read_text()
    assert "Every model agrees" in said and "Each of the 3 models chosen here (of " in said  # not "every model"
    # a ReLU whose backward lets the gradient through where the input was negative
    popped = ReLU.backward
    monkeypatch.setattr(ReLU, "backward", lambda self, dout: (popped(self, dout), dout)[1])
    bad = tmp_path / "bad"
    assert main(["run", "engine-check", "--set", "models=mlp,palindrome-lstm", "--out", str(bad)]) == 0
    rows = {r["model"]: r for r in json.loads((bad / "summary.json").read_text())["rows"]}
    assert not rows["mlp"]["passed"] and rows["mlp"]["dx"] > 1e-3 and rows["palindrome-lstm"]["passed"]
    assert "**mlp disagree(s)**" in (bad / "report.md").read_text()
    capsys.readouterr()
    assert main(["run", "engine-check", "--set", "models=mlp,resnet"]) == 2
    assert "unknown model(s) resnet" in capsys.readouterr().err


def test_an_interrupted_reproduce_says_the_reproduce_command_that_continues_it(tmp_path, monkeypatch, capsys):
    import twinnet.experiments.reproduce as reproduce

    def stopped(run_dir, jobs, **kwargs):  # the first job has measured something when Ctrl-C comes
        (run_dir.path / jobs[0].key).mkdir()
        (run_dir.path / jobs[0].key / "metrics.jsonl").write_text("{}\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(reproduce, "run_sweep", stopped)
    out = tmp_path / "rep"
    assert main(["reproduce", "--quick", "--parts", "engine,rnn", "--seed", "3", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert f"to continue: twinnet reproduce --quick --parts engine,rnn --out {out}\n" in err
    assert "twinnet run reproduce" not in err
    # the command printed continues it, with the folder's own seed and parts
    continued = []
    monkeypatch.setattr(reproduce, "run_sweep", lambda run_dir, jobs, **kwargs: continued.extend(jobs) or {})
    monkeypatch.setattr(reproduce, "_summary", lambda *args: {"runs": [], "over_seeds": []})
    monkeypatch.setattr(reproduce, "report", lambda path: [])
    command = err.split("to continue: twinnet ")[1].splitlines()[0].split()
    assert main(command) == 0, capsys.readouterr().err
    assert {j.seed for j in continued} == {3} and {j.labels["part"] for j in continued} == {"engine", "rnn"}


def test_the_ladder_over_seeds_is_compared_rung_by_rung_and_a_headline_preset_as_a_whole():
    from twinnet.experiments.reproduce import ReproduceConfig, _over_seeds

    jobs = [j for _, j in ReproduceConfig(parts="cnn", level="full", seed=3).jobs()]
    ladder = {"cnn-ablation": [0.78, 0.82, 0.86], "cnn-ablation-seed1": [0.80, 0.81, None]}  # seed 1 lacks a rung
    done = {key: {"variants": [{"variant": rung, "changes": "...", "test_acc": acc, "train_time_s": 100.0 + i,
                                "eval_time_s": 4.0}
                               for i, (rung, acc) in enumerate(zip(("course", "augment", "schedule"), accs))
                               if acc is not None]} for key, accs in ladder.items()}
    done.update({"cnn-vgg-best": {"test_acc": 0.87, "train_time_s": 10.0},
                 "cnn-vgg-best-seed1": {"test_acc": 0.88, "train_time_s": 12.0}})
    groups = {g["job"]: g for g in _over_seeds([j for j in jobs if j.key in done], done)}
    assert list(groups) == ["cnn-ablation: course", "cnn-ablation: augment", "cnn-vgg-best"]
    course = groups["cnn-ablation: course"]
    assert course["seeds"] == [3, 4] and course["figures"]["test_acc"]["values"] == [0.78, 0.80]
    assert course["figures"]["test_acc"]["mean"] == pytest.approx(0.79)
    # training time over seeds leaves the evaluations out, as the ladder's own table does
    assert groups["cnn-ablation: augment"]["figures"]["training_s"]["mean"] == pytest.approx(97.0)
    assert groups["cnn-vgg-best"]["figures"]["training_s"]["mean"] == pytest.approx(11.0)
    assert groups["cnn-vgg-best"]["figures"]["test_acc"]["std"] == pytest.approx(0.005)


def test_the_overview_says_over_seeds_what_each_rung_of_the_ladder_bought():
    from twinnet.experiments.reproduce import _seeds_table
    from twinnet.report.blocks import Text

    def group(job, values):
        mean = sum(values) / len(values)
        std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
        return {"job": job, "seeds": [0, 1], "figures": {"test_acc": {
            "mean": mean, "std": std, "min": min(values), "max": max(values), "values": values}},
            **({"rung": job.split(": ")[1]} if ": " in job else {})}  # as _over_seeds gives a ladder's rungs

    groups = [group("cnn-ablation: augment", [0.82, 0.83]), group("cnn-ablation: course", [0.78, 0.79]),
              group("cnn-vgg-best", [0.87, 0.88])]
    texts = [b.markdown for b in _seeds_table(groups) if isinstance(b, Text)]
    assert any("Over seeds 0, 1, each rung's mean test accuracy against the one above it, in points: augment "
               "+4.00 (78.50% to 82.50%)" in t for t in texts), texts  # the ladder's order, not the groups'
    assert not any("Over seeds" in t for t in [b.markdown for b in _seeds_table(groups[2:]) if isinstance(b, Text)])
    from twinnet.report.blocks import Table

    def time_column(figures):
        table = next(b for b in _seeds_table([{"job": "cnn-vgg-best", "seeds": [0, 1], "figures": {
            **groups[2]["figures"], **figures}}]) if isinstance(b, Table))
        return table.rows[0][-1]

    timing = {"mean": 100.0, "std": 2.0, "min": 98.0, "max": 102.0, "values": [98.0, 102.0]}
    assert time_column({"training_s": timing}) == "100 ± 2 s"
    assert time_column({"train_time_s": timing}) == "100 ± 2 s"  # a folder summarised before session 38
