"""The command line end to end: a quick run writes every artefact; bad input is one clear line."""

import json
import os
import subprocess
import sys

import pytest

from twinnet.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _twinnet(*args, cwd=None):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "twinnet", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "quick"
    proc = _twinnet("run", "mlp-compare", "--quick", "--out", str(out), "--seed", "3",
                    "--set", "datasets=moons,blobs")
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_last_line_printed_is_the_run_directory(quick_run):
    out, proc = quick_run
    assert proc.stdout.strip().splitlines()[-1] == str(out)


def test_config_json_holds_the_resolved_configuration(quick_run):
    cfg = json.loads((quick_run[0] / "config.json").read_text())
    assert cfg["experiment"] == "mlp-compare" and cfg["quick"] is True
    assert cfg["config"]["seed"] == 3 and cfg["config"]["datasets"] == ["moons", "blobs"]
    assert cfg["config"]["epochs"] == 2  # the quick size, not the default


def test_metrics_has_one_record_per_evaluation(quick_run):
    records = [json.loads(line) for line in (quick_run[0] / "metrics.jsonl").read_text().splitlines()]
    # 2 datasets x 2 engines x (initial + 2 epochs)
    assert len(records) == 12
    assert {(r["dataset"], r["engine"]) for r in records} == {(d, e) for d in ("moons", "blobs")
                                                              for e in ("numpy", "torch")}
    assert all(0 <= r["test_acc"] <= 1 and r["train_loss"] > 0 for r in records)


def test_summary_has_results_and_agreement(quick_run):
    summary = json.loads((quick_run[0] / "summary.json").read_text())
    assert len(summary["results"]) == 4
    for r in summary["results"]:
        assert set(r) == {"dataset", "engine", "test_acc", "test_loss", "train_acc", "train_loss"}
        assert r["engine"] in ("numpy", "torch") and 0 <= r["test_acc"] <= 1
    assert set(summary["agreement"]) == {"moons", "blobs"}
    assert all(a["max_rel_loss_diff"] < 1e-9 for a in summary["agreement"].values())


def test_env_json_records_versions_hardware_and_seed(quick_run):
    env = json.loads((quick_run[0] / "env.json").read_text())
    assert env["seed"] == 3
    assert {"python", "numpy", "torch", "cpu", "cpu_count", "threads"} <= set(env)
    assert env["openblas_thread_timeout"] == os.environ["OPENBLAS_THREAD_TIMEOUT"]  # set when twinnet loaded
    assert env["openblas_thread_timeout_applied"] is True  # the CLI loads twinnet before NumPy


def test_report_embeds_every_figure_and_both_structure_tables(quick_run):
    out = quick_run[0]
    report = (out / "report.md").read_text()
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == 8  # data, boundary, curves, agreement for each dataset
    for name in pngs:
        assert (out / name).read_bytes().startswith(PNG_MAGIC)
        assert f"]({name})" in report
    assert "### MLP 2-20-2 — numpy engine" in report and "### MLP 2-20-2 — torch engine" in report
    assert "### MLP 2-20-3 — torch engine" in report  # blobs has three classes
    assert "Total parameters: **102**" in report  # 2*20+20 + 20*2+2
    files = report.split("## Files")[1]  # the files this run has, and no others
    assert "`moons.npz`" not in files and "`*.npz`" in files and "`*.png`" in files and "`metrics.jsonl`" in files
    assert "checkpoint.pt" not in files and "results.jsonl" not in files and "inflight" not in files


def test_report_analysis_says_how_closely_the_engines_agree_and_sets_moons_beside_the_published_figures(quick_run):
    out = quick_run[0]
    report = (out / "report.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    moons = summary["agreement"]["moons"]
    assert f"moons: The two engines' training loss differed by at most {moons['max_rel_loss_diff']:.1e}" in report
    acc = next(r["test_acc"] for r in summary["results"] if r["dataset"] == "moons" and r["engine"] == "numpy")
    assert (f"moons, numpy engine, against the figures published for the same work: 96.00% to 98.50% (published "
            f"student results on moons and circles, both engines): its {100 * acc:.2f}%") in report
    assert "blobs, numpy engine, against" not in report  # the published results are for moons and circles
    assert "--quick run" in report


def test_report_command_redraws_from_files(quick_run, capsys):
    out = quick_run[0]
    (out / "report.md").unlink()
    (out / "moons_boundary.png").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "report.md").exists() and (out / "moons_boundary.png").exists()


def test_existing_run_directory_is_never_overwritten(quick_run):
    out = quick_run[0]
    before = (out / "summary.json").read_bytes()
    proc = _twinnet("run", "mlp-compare", "--quick", "--out", str(out))
    assert proc.returncode != 0 and "already exists" in proc.stderr
    assert (out / "summary.json").read_bytes() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "mlp-comapre"], "unknown experiment 'mlp-comapre' (did you mean 'mlp-compare'?)"),
        (["run", "mlp-compare", "--set", "learning_rate=0.1"], "--set learning_rate: unknown key"),
        (["run", "mlp-compare", "--set", "lr=fast"], "--set lr=fast: expected a number"),
        (["run", "mlp-compare", "--set", "lr=-0.1"], "lr must be > 0, got -0.1"),
        (["run", "mlp-compare", "--set", "datasets=spirals"], "datasets must be"),
        (["summary", "resnet-9000"], "unknown model 'resnet-9000'"),
        (["run", "mnist-numpy", "--data-dir", "/no/such/twinnet-data"],
         "the data directory /no/such/twinnet-data does not exist"),
    ],
)
def test_bad_input_is_one_line_without_traceback(args, message, tmp_path):
    proc = _twinnet(*args, "--out", str(tmp_path / "x")) if args[0] == "run" else _twinnet(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("twinnet: error:") and message in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()  # nothing half-made


def test_list_names_every_experiment(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "mlp-compare" in out and "NumPy vs PyTorch" in out


def test_summary_prints_both_engines(capsys):
    assert main(["summary", "mlp-cifar"]) == 0
    out = capsys.readouterr().out
    assert out.count("total parameters: 1,738,890") == 2
    assert "numpy engine" in out and "torch engine" in out


def test_show_config_resolves_quick_and_overrides(capsys):
    assert main(["run", "mlp-compare", "--quick", "--set", "hidden=7,5", "--show-config"]) == 0
    out = capsys.readouterr().out
    assert "hidden = [7, 5]" in out and "epochs = 2" in out


def test_show_config_of_a_resume_is_the_saved_runs_and_a_missing_one_is_refused(tmp_path, capsys):
    """--resume DIR --show-config prints what the resumed run would continue with: its saved settings, not
    the experiment's defaults; a folder that is not there is an error, as the resume itself would be."""
    from twinnet.runs import CONFIG

    run = tmp_path / "run"
    run.mkdir()
    saved = {"experiment": "palindrome", "quick": False, "config": {"hidden": 16, "steps": 20000}}
    (run / CONFIG).write_text(json.dumps(saved))
    assert main(["run", "palindrome", "--resume", str(run), "--show-config"]) == 0
    out = capsys.readouterr().out
    assert "hidden = 16" in out and "steps = 20000" in out
    assert main(["run", "palindrome", "--resume", str(tmp_path / "gone"), "--show-config"]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_threads_sets_torch_the_blas_and_the_numpy_engine_alike():
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    from twinnet.numpy_nn import backend
    from twinnet.hardware import set_threads

    before = (torch.get_num_threads(), backend.num_threads(), backend._threads)
    with threadpool_limits(limits=None):  # restores the BLAS's own setting on the way out
        try:
            set_threads(1)
            assert torch.get_num_threads() == 1 and backend.num_threads() == 1
            assert all(pool["num_threads"] == 1 for pool in threadpool_info() if pool["user_api"] == "blas")
        finally:
            torch.set_num_threads(before[0])
            backend._threads = before[2]
    assert backend.num_threads() == before[1]


def test_an_empty_path_option_is_refused_not_taken_for_the_current_folder(tmp_path):
    for args in (["run", "palindrome", "--quick", "--out", ""], ["check", "x.py", "--json", ""]):
        proc = _twinnet(*args)
        assert proc.returncode == 2 and "an empty path" in proc.stderr and "Traceback" not in proc.stderr


def test_ctrl_c_while_the_command_starts_is_one_line_and_status_130(monkeypatch, capsys):
    import twinnet.cli

    def interrupted():  # Ctrl-C while the modules load or the arguments are read, before the command runs
        raise KeyboardInterrupt

    monkeypatch.setattr(twinnet.cli, "_parser", interrupted)
    assert twinnet.cli.main(["list"]) == 130
    err = capsys.readouterr().err
    assert err == "twinnet: interrupted; files already written are complete\n"


def test_ctrl_c_while_the_command_line_module_itself_loads_is_one_line_and_status_130(monkeypatch, capsys):
    import sys

    from twinnet.__main__ import run

    class Interrupting:  # the import of twinnet.cli is where the first tenth of a second goes
        def find_spec(self, name, path=None, target=None):
            if name == "twinnet.cli":
                raise KeyboardInterrupt

    monkeypatch.delitem(sys.modules, "twinnet.cli", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Interrupting(), *sys.meta_path])
    assert run() == 130
    assert capsys.readouterr().err == "twinnet: interrupted; nothing was written\n"


def test_a_setting_config_json_gained_by_hand_that_the_experiment_lacks_is_warned_of(tmp_path):
    import json

    out = tmp_path / "run"
    assert main(["run", "palindrome", "--quick", "--out", str(out), "--threads", "1"]) == 0
    saved = json.loads((out / "config.json").read_text())
    saved["config"]["learning_rate"] = 0.5  # a typo for lr: it must not pass unseen
    (out / "config.json").write_text(json.dumps(saved))
    (out / "summary.json").unlink()
    with pytest.warns(UserWarning, match="learning_rate is no setting of palindrome, so it is ignored"):
        assert main(["run", "palindrome", "--resume", str(out)]) == 0


def test_check_help_names_every_layer_kind_the_grader_has(capsys):
    from twinnet.grader.kinds import KINDS

    with pytest.raises(SystemExit):
        main(["check", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    listed = text.split("(of: ", 1)[1].split(";", 1)[0]
    assert [k.strip() for k in listed.split(",")] == list(KINDS)


def test_settings_in_the_environment_that_are_not_understood_are_said_to_be_ignored(monkeypatch, capsys):
    import twinnet.train
    from twinnet import hardware

    for text, expected in (("abc", 15.0), ("-1", 15.0), ("nan", 15.0), ("2.5", 2.5), ("inf", float("inf"))):
        monkeypatch.setenv("TWINNET_LOG_EVERY_S", text)
        assert twinnet.train._log_every_s() == expected
        assert ("ignored" in capsys.readouterr().err) == (expected == 15.0)
    monkeypatch.setenv("TWINNET_CPU_BF16", "maybe")
    hardware.cpu_bf16.cache_clear()
    try:
        with pytest.warns(UserWarning, match="TWINNET_CPU_BF16='maybe' is neither 0 nor 1"):
            hardware.cpu_bf16()
    finally:
        hardware.cpu_bf16.cache_clear()


def test_the_fake_data_script_the_readme_names_writes_data_both_loaders_read(tmp_path):
    from twinnet.data.cifar import load_cifar10
    from twinnet.data.mnist import load_mnist

    script = os.path.join(os.path.dirname(__file__), "fake_data.py")
    out = subprocess.run([sys.executable, script, str(tmp_path / "fd")], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(tmp_path / "fd")
    digits = load_mnist(tmp_path / "fd", verify=False, cache_dir=tmp_path / "cache")
    images = load_cifar10(tmp_path / "fd", verify=False, cache_dir=tmp_path / "cache")
    assert digits.train.x.shape == (300, 1, 28, 28) and digits.test.x.shape == (100, 1, 28, 28)
    assert images.train.x.shape == (100, 3, 32, 32) and images.test.x.shape == (20, 3, 32, 32)
    assert sorted(set(images.test.y.tolist())) == list(range(10))
    usage = subprocess.run([sys.executable, script], capture_output=True, text=True)
    assert usage.returncode == 1 and "usage: python tests/fake_data.py DIR" in usage.stderr


def test_a_run_that_kept_nothing_removes_its_folders_but_not_a_run_started_inside_them(tmp_path):
    from twinnet.runs import RunDir

    root = tmp_path / "runs"
    failed = RunDir.create("mlp-compare", runs_root=root)  # made runs/, runs/mlp-compare/ and its own folder
    other = RunDir.create("palindrome", runs_root=root)  # another run, started meanwhile under the same root
    other.write_json("config.json", {"seed": 0})
    failed.discard()
    assert not failed.path.exists() and not (root / "mlp-compare").exists()
    assert other.file("config.json").exists()  # the other run's files are untouched
    alone = RunDir.create("mlp-compare", runs_root=tmp_path / "fresh")
    alone.discard()
    assert not (tmp_path / "fresh").exists()  # every folder it made, when nothing else is in them


def test_the_agreement_figure_of_a_float32_comparison_is_captioned_with_float32s_epsilon(tmp_path):
    out = tmp_path / "f32"
    assert main(["run", "mlp-compare", "--quick", "--set", "datasets=moons", "--set", "dtype=float32", "--out",
                 str(out), "--threads", "1"]) == 0
    report = (out / "report.md").read_text()
    assert "the dashed line is float32's machine epsilon" in report and "float64's machine epsilon" not in report
