"""The README's examples are true: every course spec it shows loads as the grader reads specs."""

import re
import textwrap
from pathlib import Path

import pytest

from twinnet.grader import resolve_convention

README = Path(__file__).resolve().parent.parent / "README.md"
SPECS = [textwrap.dedent(block) for block in re.findall(r"```toml\n(.*?)```", README.read_text(), flags=re.S)]


def test_the_readme_shows_the_course_specs_it_describes():
    names = [re.search(r'^name = "(.+)"$', spec, flags=re.M) for spec in SPECS]
    assert len(SPECS) >= 8 and all(names), "a README spec without a name"
    assert {"mytorch", "i2dl", "i2dl-losses"} <= {m.group(1) for m in names}


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: re.search(r'^name = "(.+)"$', s, flags=re.M).group(1))
def test_every_spec_in_the_readme_loads(tmp_path, spec):
    (tmp_path / "course.toml").write_text(spec)
    convention = resolve_convention(None, tmp_path / "course.toml")
    assert convention["layers"] and convention["name"] == re.search(r'^name = "(.+)"$', spec, flags=re.M).group(1)
