"""Defaults that adapt to the machine: bfloat16 autocast only where the CPU has it, threads by idle cores."""

import json
import os
import warnings

import pytest

from twinnet import hardware
from twinnet.cli import main
from twinnet.config import apply_overrides, make_config


@pytest.fixture
def bf16(monkeypatch):
    """Force the answer to "does this CPU have native bfloat16?" (0 or 1), as a user's machine would give it."""

    def force(value: str) -> None:
        monkeypatch.setenv("TWINNET_CPU_BF16", value)
        hardware.cpu_bf16.cache_clear()
        monkeypatch.setattr(hardware, "_warned_amp", False)

    yield force
    hardware.cpu_bf16.cache_clear()


def test_auto_amp_is_on_for_cuda_and_for_a_cpu_only_with_native_bf16(bf16, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # an Ampere or later GPU
    bf16("0")
    assert hardware.resolve_amp("auto", "cpu") is False and hardware.resolve_amp("auto", "cuda") is True
    assert hardware.resolve_amp(False, "cuda") is False
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # an older GPU
    assert hardware.resolve_amp("auto", "cuda") is False
    # a T4 or V100: torch says yes by default, counting emulation; only native bf16 turns autocast on
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert hardware.resolve_amp("auto", "cuda") is False
    bf16("1")
    assert hardware.resolve_amp("auto", "cpu") is True


def test_forced_amp_on_a_cpu_without_bf16_is_honoured_with_one_warning(bf16):
    bf16("0")
    with pytest.warns(UserWarning, match="without native bfloat16.*amp=auto"):
        assert hardware.resolve_amp(True, "cpu") is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second time: no warning
        assert hardware.resolve_amp(True, "cpu") is True
    bf16("1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hardware.resolve_amp(True, "cpu") is True


def test_forced_amp_on_a_gpu_without_native_bf16_is_honoured_with_one_warning(bf16, monkeypatch):
    import torch

    bf16("1")  # the CPU's answer does not decide a GPU's
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    with pytest.warns(UserWarning, match=r"GPU without native bfloat16.*amp=auto"):  # a T4 or V100
        assert hardware.resolve_amp(True, "cuda") is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second time: no warning
        assert hardware.resolve_amp(True, "cuda") is True
    monkeypatch.setattr(hardware, "_warned_amp", False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # an Ampere or later GPU: none
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hardware.resolve_amp(True, "cuda") is True


def test_amp_takes_auto_true_or_false_from_the_command_line():
    from twinnet.experiments.image import ImageConfig

    cfg = make_config(ImageConfig, {"engine": "torch"})
    assert cfg.amp == "auto"
    assert [apply_overrides(cfg, [f"amp={v}"]).amp for v in ("true", "false", "auto", "on")] == [True, False, "auto",
                                                                                                   True]
    from twinnet import TwinnetError

    with pytest.raises(TwinnetError, match="expected true or false or one of 'auto'"):
        apply_overrides(cfg, ["amp=maybe"])
    assert make_config(ImageConfig, {"engine": "numpy", "amp": "auto"}).amp == "auto"  # the NumPy engine: float32


@pytest.mark.parametrize("native, expected", [("0", False), ("1", True)])
def test_an_image_run_uses_bf16_only_where_the_cpu_has_it_and_records_the_cpu(native, expected, bf16, tmp_path,
                                                                               monkeypatch, capsys):
    from tests.test_bad_inputs import write_cifar_tree

    bf16(native)
    monkeypatch.setenv("TWINNET_CACHE_DIR", str(tmp_path / "cache"))
    write_cifar_tree(tmp_path / "data" / "cifar10", per_class=(4, 2))
    out = tmp_path / "run"
    assert main(["run", "mlp-cifar-best", "--quick", "--data-dir", str(tmp_path / "data"), "--out", str(out),
                 "--set", "val_split=8", "--threads", "1"]) == 0
    assert json.loads((out / "summary.json").read_text())["amp"] is expected
    env = json.loads((out / "env.json").read_text())
    assert env["cpu_bf16"] is expected and env["cpu_capability"] == hardware.cpu_capability()
    assert env["cpu"] == hardware.cpu_name() and env["threads"] == 1 and env["threads_chosen_by"] == "--threads"
    assert env["torch_threads"] == 1 and env["blas_threads"] == [1] and env["engine_threads"] == 1


def test_default_threads_come_from_twinnet_threads_or_the_idle_cores(monkeypatch):
    monkeypatch.setenv("TWINNET_THREADS", "1")
    assert hardware.default_threads() == (1, "TWINNET_THREADS")
    from twinnet import TwinnetError

    monkeypatch.setenv("TWINNET_THREADS", "many")
    with pytest.raises(TwinnetError, match="TWINNET_THREADS='many'"):
        hardware.default_threads()
    monkeypatch.setenv("TWINNET_THREADS", "\u00b2")  # a digit to str.isdigit, not to int()
    with pytest.raises(TwinnetError, match="expected an integer >= 1"):
        hardware.default_threads()
    limit = hardware.MAX_THREADS_PER_CORE * hardware.cores()  # as --threads: OpenMP fails on thousands
    monkeypatch.setenv("TWINNET_THREADS", str(limit))
    assert hardware.default_threads() == (limit, "TWINNET_THREADS")
    monkeypatch.setenv("TWINNET_THREADS", str(limit + 1))
    with pytest.raises(TwinnetError, match=f"TWINNET_THREADS={limit + 1} is more than 8x this machine's"):
        hardware.default_threads()
    monkeypatch.delenv("TWINNET_THREADS")
    free = hardware.idle_cores(0.05)
    assert free is None or 0 <= free <= hardware.cores()
    threads, chosen_by = hardware.default_threads()
    assert 1 <= threads <= hardware.cores() and chosen_by in ("idle cores", "cores")


def test_idle_cores_sees_another_process_on_a_core(monkeypatch):
    """A machine whose /proc/stat says one of two cores was busy (not with this process): one idle core."""
    samples = iter([(1000, 2000), (1100, 2200)])  # (idle, total) jiffies: half of the 200 elapsed were busy
    monkeypatch.setattr(hardware, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(hardware, "cores", lambda: 2)
    monkeypatch.setattr(hardware.time, "sleep", lambda s: None)
    monkeypatch.setattr(hardware.time, "process_time", lambda: 0.0)  # this process used no CPU meanwhile
    assert hardware.idle_cores() == pytest.approx(1.0)
    samples = iter([(1000, 2000), (1000, 2200)])  # both busy
    assert hardware.idle_cores() == 0.0
    monkeypatch.setenv("TWINNET_THREADS", "")
    samples2 = iter([(1000, 2000), (1000, 2200)])
    monkeypatch.setattr(hardware, "_cpu_times", lambda: next(samples2))
    assert hardware.default_threads() == (1, "idle cores")  # never fewer than one


def test_a_resumed_run_keeps_the_thread_count_it_started_with(tmp_path):
    from twinnet.runner import choose_threads
    from twinnet.runs import RunDir

    run = RunDir(tmp_path)
    run.write_json("env.json", {"threads": 1})
    assert choose_threads(None, run) == (1, "the resumed run's")
    assert choose_threads(2, run) == (2, "--threads")
    run.write_json("env.json", {"threads": 10_000})  # started on a larger machine: no more threads than cores here
    assert choose_threads(None, run) == (hardware.cores(), "the resumed run's")


def test_notebook_runs_record_the_call_as_their_command(tmp_path, capsys):
    from twinnet.notebook import run

    path = run("mlp-compare", "datasets=moons", quick=True, runs_dir=tmp_path, threads=1)
    env = json.loads((path / "env.json").read_text())
    assert env["command"] == f"twinnet.notebook.run('mlp-compare', 'datasets=moons', quick=True, " \
                             f"runs_dir={tmp_path!r}, threads=1)"


def test_cli_runs_record_their_own_arguments_as_the_command(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", "mlp-compare", "--quick", "--set", "datasets=moons", "--out", str(out)]) == 0
    assert json.loads((out / "env.json").read_text())["command"] == \
        f"twinnet run mlp-compare --quick --set datasets=moons --out {out}"


def test_decoding_many_images_says_so(tmp_path, monkeypatch, capsys):
    from tests.test_bad_inputs import write_cifar_tree
    from twinnet.data import image_tree
    from twinnet.data.cifar import load_cifar10

    write_cifar_tree(tmp_path / "cifar10", per_class=(2, 1))
    monkeypatch.setattr(image_tree, "DECODE_NOTICE_AT", 30)
    load_cifar10(tmp_path, cache_dir=tmp_path / "cache")
    assert capsys.readouterr().err.startswith("twinnet: decoding 30 CIFAR-10 images from ")
    load_cifar10(tmp_path, cache_dir=tmp_path / "cache")  # from the cache: nothing to say
    assert capsys.readouterr().err == ""


def test_cpu_times_reads_only_the_cores_this_process_may_use(monkeypatch, tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  10 0 10 100 0 0 0 0 0 0\ncpu0 5 0 5 50 0 0 0 0 0 0\ncpu1 5 0 5 50 0 0 0 0 0 0\n"
                    "cpu2 0 0 0 999 0 0 0 0 0 0\nintr 1\n")
    real_path = hardware.Path
    monkeypatch.setattr(hardware, "Path", lambda p: stat if p == "/proc/stat" else real_path(p))
    monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda pid: {0, 1})
    assert hardware._cpu_times() == (100, 120)  # cpu2 is not ours
    stat.write_text("garbage\n")
    assert hardware._cpu_times() is None


@pytest.mark.parametrize("v2, v1, expected", [
    (("max", 100000), (-1, 100000), 8),  # no quota anywhere: the affinity's 8
    ((150000, 100000), OSError, 2),  # cgroup v2: 1.5 CPUs, rounded up
    (OSError, (150000, 100000), 2),  # cgroup v1 (cpu.cfs_quota_us), as older Docker hosts have
    (OSError, (-1, 100000), 8),  # v1 without a quota
    (OSError, OSError, 8),  # no cgroup files: macOS, Windows
])
def test_cores_are_capped_by_a_containers_cpu_quota_in_either_cgroup_version(monkeypatch, v2, v1, expected):
    def reader(value):
        def read():
            if value is OSError:
                raise OSError("no such file")
            quota, period = value
            return (-1 if quota == "max" else quota), period
        return read

    monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(hardware, "_cgroup2_quota", reader(v2))
    monkeypatch.setattr(hardware, "_cgroup1_quota", reader(v1))
    assert hardware.cores() == expected


def test_a_setting_that_cannot_fit_in_memory_is_refused_naming_it_and_one_that_fits_is_not(monkeypatch):
    from twinnet import TwinnetError

    monkeypatch.setattr(hardware, "memory_bytes", lambda: 8 * 2**30)
    hardware.check_fits(8 * 2**30, "hidden=[5]")  # exactly the machine's memory: not refused
    with pytest.raises(TwinnetError, match=r"hidden=\[5\] needs at least 9 GiB of memory to train, and this machine "
                                           r"has 8 GiB; make it smaller"):
        hardware.check_fits(9 * 2**30, "hidden=[5]")
    with pytest.raises(TwinnetError, match=r"needs at least 8\.2 GiB of memory to train, and this machine has 8 GiB"):
        hardware.check_fits(8.2 * 2**30, "hidden=[5]")  # not "8 GiB ... has 8 GiB"
    monkeypatch.setattr(hardware, "memory_bytes", lambda: 40 * 2**20)
    with pytest.raises(TwinnetError, match=r"needs at least 48 MiB of memory to train, and this machine has 40 MiB"):
        hardware.check_fits(48 * 2**20, "batch_size=100")
    monkeypatch.setattr(hardware, "memory_bytes", lambda: None)  # a system that does not say: nothing refused
    hardware.check_fits(1e18, "hidden=[5]")


@pytest.mark.parametrize("v2, v1, limited", [
    (2**30, OSError, True),  # cgroup v2 with a limit (a container's --memory=1g)
    ("max", OSError, False),  # cgroup v2 without one
    (OSError, 2**30, True),  # cgroup v1 with a limit
    (OSError, 2**63 - 4096, False),  # cgroup v1 without one: a number above any machine's memory
    (OSError, OSError, False),  # no cgroup files: the machine's memory
])
def test_memory_is_the_machines_capped_by_a_containers_limit(monkeypatch, v2, v1, limited):
    def reader(value):
        def read():
            if value is OSError:
                raise OSError("no such file")
            return -1 if value == "max" else value
        return read

    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert physical > 2**30  # the limits above are below any machine that runs these tests
    monkeypatch.setattr(hardware, "_cgroup2_memory", reader(v2))
    monkeypatch.setattr(hardware, "_cgroup1_memory", reader(v1))
    assert hardware.memory_bytes() == (2**30 if limited else physical)
