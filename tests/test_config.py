"""--set parsing: every field type, and the errors a user sees."""

from dataclasses import dataclass
from typing import Literal

import pytest

from twinnet import TwinnetError
from twinnet.config import BaseConfig, apply_overrides, make_config, parse_value, to_dict


@dataclass(frozen=True)
class Cfg(BaseConfig):
    lr: float = 0.1
    steps: int = 10
    hidden: tuple[int, ...] = (20,)
    names: tuple[str, ...] = ("a", "b")
    mode: Literal["mini", "full"] = "mini"
    flag: bool = False

    def __post_init__(self):
        if self.lr < 0:
            raise ValueError(f"lr must be >= 0, got {self.lr}")


@pytest.mark.parametrize(
    "raw, tp, expected",
    [
        ("3", int, 3),
        ("1e-3", float, 1e-3),
        ("true", bool, True),
        ("off", bool, False),
        ("64,32", tuple[int, ...], (64, 32)),
        ("[64, 32]", tuple[int, ...], (64, 32)),
        ("(64,)", tuple[int, ...], (64,)),  # Python's one-item tuple
        ("[]", tuple[int, ...], ()),
        ("moons", tuple[str, ...], ("moons",)),
        ("full", Literal["mini", "full"], "full"),
    ],
)
def test_parse_value(raw, tp, expected):
    assert parse_value(raw, tp) == expected


@pytest.mark.parametrize("raw, tp", [("abc", float), ("1.5", int), ("maybe", bool), ("half", Literal["mini", "full"]),
                                     ("1,x", tuple[int, ...]), ("[[20]]", tuple[int, ...]), ("[20", tuple[int, ...]),
                                     ("20,,30", tuple[int, ...])])
def test_parse_value_rejects_mistyped(raw, tp):
    with pytest.raises(ValueError):
        parse_value(raw, tp)


def test_overrides_apply_and_leave_the_original_alone():
    base = Cfg()
    cfg = apply_overrides(base, ["lr=0.5", "hidden=8,8,8", "mode=full", "flag=yes", "seed=7"])
    assert (cfg.lr, cfg.hidden, cfg.mode, cfg.flag, cfg.seed) == (0.5, (8, 8, 8), "full", True, 7)
    assert base.lr == 0.1 and base.hidden == (20,)


def test_unknown_key_names_the_key_and_the_valid_ones():
    with pytest.raises(TwinnetError, match=r"--set lrate: unknown key.*valid keys: seed, lr"):
        apply_overrides(Cfg(), ["lrate=1"])
    # a key in other case, or one letter off, is told the key it was near
    with pytest.raises(TwinnetError, match=r"--set LR: unknown key \(did you mean lr\?\); valid keys"):
        apply_overrides(Cfg(), ["LR=1"])
    with pytest.raises(TwinnetError, match=r"--set hiden: unknown key \(did you mean hidden\?\)"):
        apply_overrides(Cfg(), ["hiden=1"])


def test_mistyped_value_names_the_key_and_the_expected_type():
    with pytest.raises(TwinnetError, match=r"--set steps=ten: expected an integer"):
        apply_overrides(Cfg(), ["steps=ten"])


def test_an_integer_beyond_64_bits_is_refused_where_it_is_set_or_saved():
    # NumPy and torch take sizes and seeds as 64-bit integers: a larger one failed deep inside them
    assert apply_overrides(Cfg(), [f"steps={2**63 - 1}"]).steps == 2**63 - 1
    for raw in (str(2**63), "99999999999999999999", str(-(2**63) - 1)):
        with pytest.raises(TwinnetError, match=rf"--set steps={raw}: expected an integer from -2\*\*63"):
            apply_overrides(Cfg(), [f"steps={raw}"])
    with pytest.raises(TwinnetError, match=r"steps=9223372036854775808 \(expected int\)"):
        make_config(Cfg, {"steps": 2**63})  # a config.json edited by hand


def test_missing_equals_sign():
    with pytest.raises(TwinnetError, match="expected key=value"):
        apply_overrides(Cfg(), ["lr"])


def test_validation_in_post_init_becomes_a_twinnet_error():
    with pytest.raises(TwinnetError, match="lr must be >= 0"):
        apply_overrides(Cfg(), ["lr=-1"])


def test_json_round_trip_restores_tuples_and_floats():
    cfg = Cfg(lr=2.0, hidden=(3, 4))
    data = to_dict(cfg)
    assert data["hidden"] == [3, 4]
    data["lr"] = 2  # JSON may store a whole float as an int
    assert make_config(Cfg, data) == cfg


@pytest.mark.parametrize("experiment, setting, item", [
    ("palindrome-sweep", "lengths=3,5,3", "3"), ("palindrome-sweep", "models=rnn,gru,rnn", "rnn"),
    ("rnn-gradients", "models=lstm,lstm", "lstm"), ("cifar-time", "budgets=0.5,0.50", "0.5"),
    ("cifar-time", "seeds=1,1", "1"), ("cifar-time", "presets=cifar-fast,airbench94,cifar-fast", "cifar-fast"),
    ("cnn-ablation", "variants=course,augment,course", "course"), ("mlp-compare", "datasets=moons,moons", "moons"),
    ("engine-check", "models=airbench94,airbench94", "airbench94"),
])
def test_a_list_setting_naming_an_item_twice_is_refused_before_anything_is_written(experiment, setting, item,
                                                                                   tmp_path, capsys):
    from twinnet.cli import main

    out = tmp_path / "run"
    assert main(["run", experiment, "--quick", "--set", setting, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{setting.split('=')[0]} lists {item} more than once" in err and not out.exists()


def test_the_sweep_runner_refuses_two_jobs_of_one_folder(tmp_path):
    from twinnet.runs import RunDir
    from twinnet.sweep import Job, run_sweep

    jobs = [Job("runs/a", "palindrome", seed=0), Job("runs/b", "palindrome", seed=1), Job("runs/a", "palindrome")]
    with pytest.raises(TwinnetError, match="would train runs/a more than once"):
        run_sweep(RunDir(tmp_path / "sweep"), jobs)
    assert not (tmp_path / "sweep").exists() or not any((tmp_path / "sweep").iterdir())
