from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.matrix import load_matrix, native_platforms, select_targets

DEFAULT_IDS = ["cp39", "cp311", "cp313", "cp314", "cp315", "pp311"]
# In the default run where a registry answers (the -slim images) or where a
# python-build-standalone archive can be had (the rest).
OPTIONAL_IDS = ["cp310-slim", "cp312-slim", "cp310", "cp312", "cp313t", "cp314t", "cp315t"]


def test_default_matrix_has_the_six_native_targets_in_order_then_the_optional_ones():
    m = load_matrix()
    chosen = select_targets(m)
    assert [t.id for t in chosen] == DEFAULT_IDS + OPTIONAL_IDS
    assert [t.id for t in chosen if t.optional] == OPTIONAL_IDS


def test_optional_must_be_a_boolean(tmp_path: Path):
    (tmp_path / "lab.toml").write_text(
        '[[target]]\nid = "mine"\nimplementation = "cpython"\nversion = "3.13"\n'
        'python = "/usr/bin/python3.13"\nbase = "trixie"\noptional = "yes"\n')
    with pytest.raises(ConfigError, match=r"optional must be true or false; got 'yes'"):
        load_matrix(search_dir=tmp_path)


def test_targets_of_one_suite_share_one_base():
    m = load_matrix()
    sid = {m.get(t).base for t in ("cp314", "cp315", "pp311")}
    assert len(sid) == 1
    base = sid.pop()
    assert base is not None and base.suite == "sid"
    assert set(base.packages) == {"python3.14", "python3.15", "pypy3", "libgomp1"}


def test_registry_target_has_an_image_and_no_base():
    t = load_matrix().get("cp312-slim")
    assert t.image == "python:3.12-slim" and t.base is None and t.kind == "registry"


def test_unknown_target_names_the_valid_ids():
    with pytest.raises(ConfigError) as exc:
        select_targets(load_matrix(), ids=["cp99"])
    assert "cp99" in str(exc.value) and "cp311" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_lab_toml_overrides_and_adds(tmp_path: Path):
    (tmp_path / "lab.toml").write_text(
        '[base.bookworm]\nsuite = "bookworm"\npackages = ["python3.11", "python3-dev"]\n'
        '[[target]]\nid = "cp311"\nimplementation = "cpython"\nversion = "3.11"\n'
        'python = "/usr/bin/python3.11"\nbase = "bookworm"\n'
        '[[target]]\nid = "mine"\nimplementation = "cpython"\nversion = "3.13"\n'
        'python = "/usr/local/bin/python3"\nimage = "python:3.13-slim"\n'
    )
    m = load_matrix(search_dir=tmp_path)
    assert m.get("cp311").base.packages == ("python3.11", "python3-dev")
    assert m.get("cp311-i386").base.packages == ("python3.11", "python3-dev")
    assert m.ids[-1] == "mine"
    assert "mine" in [t.id for t in select_targets(m)]


@pytest.mark.parametrize("text,needle", [
    ('[[target]]\nid = "cp39"\npyton = "x"\n', "'pyton'"),
    ('[base.x]\nsuite = "sid"\npackages = ["a"]\nmirorr = "y"\n', "'mirorr'"),
    ('[[target]]\nid = "n"\nimplementation = "c"\nversion = "3"\npython = "p"\n', "exactly one"),
    ('[[target]]\nid = "n"\nimplementation = "c"\nversion = "3"\npython = "p"\nbase = "nope"\n',
     "'nope'"),
    ('[[target]]\nid = "n"\nimplementation = "c"\nversion = "3"\npython = "p"\nimage = "i"\n'
     'platform = "linux/vax"\n', "linux/vax"),
    ("[[target]\n", "not valid TOML"),
    ('[surprise]\n', "'surprise'"),
])
def test_malformed_config_names_the_problem(tmp_path: Path, text: str, needle: str):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_matrix(cfg)
    assert needle in str(exc.value)


def test_missing_config_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_matrix(tmp_path / "nope.toml")


def test_platform_selection_and_groups():
    m = load_matrix()
    arm = select_targets(m, platforms=["linux/arm64"])
    assert [t.id for t in arm] == ["cp311-arm64", "cp314-arm64"]
    assert all(t.platform == "linux/arm64" for t in arm)
    assert [t.id for t in select_targets(m, platforms=["registry"])] == ["cp310-slim",
                                                                          "cp312-slim"]
    assert len(select_targets(m, platforms=["all"])) == len(m.targets)
    with pytest.raises(ConfigError, match="unknown platform"):
        select_targets(m, platforms=["linux/m68k"])


def test_emulation_follows_the_host_cpu(monkeypatch):
    monkeypatch.setattr("lab.matrix.host_machine", lambda: "x86_64")
    m = load_matrix()
    assert not m.get("cp311-i386").emulated and m.get("cp311-arm64").emulated
    monkeypatch.setattr("lab.matrix.host_machine", lambda: "aarch64")
    assert not m.get("cp311-arm64").emulated and m.get("cp311").emulated
    assert "linux/arm64" in native_platforms()
    # The default matrix stays native-only whatever the host.
    assert all(not t.emulated for t in select_targets(m))


ENGINES = """
[engine.local]
host = "unix:///var/run/docker.sock"

[engine.arm]
host = "ssh://lab@arm-box"
platforms = ["linux/arm64"]

[engine.ci]
context = "ci-runner"
timing = false

[engine.tls]
host = "tcp://build:2376"
cert_path = "~/.docker/build"
"""


def test_engines_are_configuration(tmp_path: Path):
    (tmp_path / "lab.toml").write_text(ENGINES)
    m = load_matrix(search_dir=tmp_path)
    assert list(m.engines) == ["local", "arm", "ci", "tls"]
    arm, ci, tls = m.engines["arm"], m.engines["ci"], m.engines["tls"]
    assert arm.host == "ssh://lab@arm-box" and arm.platforms == ("linux/arm64",) and arm.timing
    assert ci.context == "ci-runner" and ci.host is None and ci.timing is False
    assert tls.cert_path == "~/.docker/build"
    assert [e.name for e in m.select_engines(["ci", "arm", "ci"])] == ["ci", "arm"]
    assert [e.name for e in m.select_engines(None)] == ["local", "arm", "ci", "tls"]


def test_without_engines_the_environment_s_engine_is_used():
    chosen = load_matrix().select_engines(None)
    assert len(chosen) == 1 and chosen[0].host is None and chosen[0].context is None


def test_an_unknown_engine_lists_the_configured_ones(tmp_path: Path):
    (tmp_path / "lab.toml").write_text(ENGINES)
    with pytest.raises(ConfigError, match=r"unknown engine 'armm' \(configured: local, arm, ci, "
                                          r"tls\)\. Add an \[engine\.armm\]"):
        load_matrix(search_dir=tmp_path).select_engines(["armm"])
    with pytest.raises(ConfigError, match="none configured"):
        load_matrix().select_engines(["x"])


@pytest.mark.parametrize("text,needle", [
    ('[engine.a]\nplatforms = ["linux/arm64"]', "needs exactly one of `host`"),
    ('[engine.a]\nhost = "unix:///s"\ncontext = "c"', "needs exactly one of `host`"),
    ('[engine.a]\nhost = "http://box"', "must be a URL starting with unix://"),
    ('[engine.a]\nhost = "unix:///s"\nplatforms = ["arm64"]', "platforms must be a list"),
    ('[engine.a]\nhost = "unix:///s"\ntiming = "no"', "timing must be true or false"),
    ('[engine.a]\nhost = "unix:///s"\ncert_path = "/c"', "cert_path is a folder of TLS"),
    ('[engine.a]\nhots = "unix:///s"', "unknown key 'hots'"),
    ('[engine.a]\nhost = "unix:///s"\nfiles = "mount"', 'files must be "bind"'),
    ('engine = 3', "`engine` must be tables"),
])
def test_a_bad_engine_table_is_one_clear_error(tmp_path: Path, text: str, needle: str):
    (tmp_path / "lab.toml").write_text(text)
    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_matrix(search_dir=tmp_path)


def test_one_function_chooses_a_command_s_targets_and_engines(tmp_path: Path, monkeypatch):
    import subprocess
    import sys

    from lab.matrix import select

    def host_python_answers(argv, **kwargs):  # what host_target asks the interpreter
        return subprocess.CompletedProcess(argv, 0, stdout="cpython 3.11 linux x86_64\n")

    monkeypatch.setattr("lab.matrix.subprocess.run", host_python_answers)

    (tmp_path / "lab.toml").write_text(ENGINES)
    m = load_matrix(search_dir=tmp_path)
    default = select(m)
    assert [t.id for t in default.targets] == DEFAULT_IDS + OPTIONAL_IDS
    assert [e.name for e in default.engines] == ["local", "arm", "ci", "tls"]
    # Only host interpreters: no matrix target comes along; with --targets, both, ids unique.
    host = select(m, host_pythons=[sys.executable, sys.executable], engines=["ci"])
    ids = [t.id for t in host.targets]
    assert len(ids) == 2 and ids[1] == ids[0] + "-2" and host.container_targets == []
    assert [e.name for e in host.engines] == ["ci"]
    both = select(m, ids=["3.14"], host_pythons=[sys.executable])
    assert [t.id for t in both.container_targets] == ["cp314"] and len(both.targets) == 2
    # Optional in the default run; named in --targets, wanted (its absence is partial).
    assert [t.id for t in default.targets if t.optional] == OPTIONAL_IDS
    named = select(m, ids=["cp310-slim", "cp311"], platforms=["registry"])
    assert {t.id: t.optional for t in named.targets} == {
        "cp311": False, "cp310-slim": False, "cp312-slim": True}
    with pytest.raises(ConfigError, match=r"no targets selected: check --targets"):
        select(m, platforms=["linux/s390x"])
    with pytest.raises(ConfigError, match="unknown engine"):
        select(m, engines=["nowhere"])


def test_python_gil_is_0_or_1_and_reaches_the_container_environment(tmp_path):
    from lab.errors import ConfigError

    head = ('[[target]]\nid = "cp314t-gil"\nimplementation = "cpython"\nversion = "3.14"\n'
            'python = "/opt/python/bin/python3"\nbase = "pbs"\n'
            'archive = "python-build-standalone"\nfreethreaded = true\n')
    (tmp_path / "lab.toml").write_text(head + "python_gil = 1\n")
    t = load_matrix(search_dir=tmp_path).get("cp314t-gil")
    assert t.python_gil == "1" and t.freethreaded and t.flavour_version == "3.14t"
    for bad in ("true", '"on"', "2"):
        (tmp_path / "lab.toml").write_text(head + f"python_gil = {bad}\n")
        with pytest.raises(ConfigError, match=r"python_gil must be 0 .* or 1 .*PYTHON_GIL"):
            load_matrix(search_dir=tmp_path)
