"""A user's dependencies: what is read from the user's files and the host's pip settings, what
is read back from pip in the container, and the one line a target that cannot have them gets.
No engine here (tests/integration/test_deps.py runs pip in real targets)."""

from __future__ import annotations

import dataclasses
import json
import zipfile

import pytest

from lab.errors import ConfigError
from lab.images.deps import _runs_on, explain_failure, installed_from, prepare
from lab.images.requirements import PipSettings, loopback, read_requirements
from lab.matrix import load_matrix
from lab.run.usercode import load_scenario_file, parse_env


def test_requirement_files_are_read_with_their_includes_and_constraints(tmp_path):
    (tmp_path / "base.txt").write_text("attrs==25.4.0  # pinned\n\n")
    (tmp_path / "pins.txt").write_text("numpy<3\n")
    (tmp_path / "requirements.txt").write_text(
        "-r base.txt\n-c pins.txt\nnumpy>=2 ; python_version >= '3.10'\n"
        "requests \\\n  >=2\n")
    reqs = read_requirements([tmp_path / "requirements.txt"], specs=["rich"])
    assert reqs.lines == ("attrs==25.4.0", "numpy>=2 ; python_version >= '3.10'",
                          "requests    >=2", "rich")
    assert reqs.constraints == ("numpy<3",)
    assert reqs.requested()[-1] == "rich" and bool(reqs)


@pytest.mark.parametrize("line", ["./mypkg", "-e .", "/abs/path", "file:///x"])
def test_a_local_path_in_a_requirements_file_points_at_project(tmp_path, line):
    (tmp_path / "r.txt").write_text(f"attrs\n{line}\n")
    with pytest.raises(ConfigError, match=r"r.txt:2: .* local path.*--project DIR"):
        read_requirements([tmp_path / "r.txt"])


def test_an_include_loop_and_a_missing_file_are_one_line(tmp_path):
    (tmp_path / "a.txt").write_text("-r a.txt\n")
    with pytest.raises(ConfigError, match="includes itself"):
        read_requirements([tmp_path / "a.txt"])
    with pytest.raises(ConfigError, match="cannot read the requirements file .*nope.txt"):
        read_requirements([tmp_path / "nope.txt"])


def test_a_pylock_file_becomes_pins_with_hashes_and_markers(tmp_path):
    lock = tmp_path / "pylock.toml"
    lock.write_text('lock-version = "1.0"\ncreated-by = "test"\n'
                    '[[packages]]\nname = "attrs"\nversion = "25.4.0"\n'
                    '[[packages.wheels]]\nname = "attrs-25.4.0-py3-none-any.whl"\n'
                    f'hashes = {{ sha256 = "{"a" * 64}" }}\n'
                    '[[packages]]\nname = "colorama"\nversion = "0.4.6"\n'
                    'marker = "sys_platform == \'win32\'"\n')
    reqs = read_requirements([lock])
    assert reqs.lines == (f"attrs==25.4.0 --hash=sha256:{'a' * 64}",
                          "colorama==0.4.6 ; sys_platform == 'win32'")


def test_with_and_project_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="--with './x' is not a requirement"):
        read_requirements(specs=["./x"])
    with pytest.raises(ConfigError, match="no pyproject.toml or setup.py"):
        read_requirements(project=str(tmp_path))
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'app'\n")
    reqs = read_requirements(project=f"{tmp_path}[fast, test]")
    assert reqs.project == tmp_path.resolve() and reqs.extras == ("fast", "test")
    assert reqs.requested() == [f"{tmp_path.name}[fast,test] (project)"]
    with pytest.raises(ConfigError, match="--wheelhouse .* is not a folder"):
        read_requirements(specs=["attrs"], wheelhouse=tmp_path / "none")


def test_the_host_pip_settings_rank_the_environment_over_files():
    listing = ("global.cert='/etc/ssl/certs/ca-certificates.crt'\n"
               "global.index-url='https://files.example/simple'\n"
               "install.index-url='https://install.example/simple'\n"
               ":env:.index-url='http://127.0.0.1:8080/simple'\n"
               ":env:.default-timeout='180'\n"
               "global.user='ignored'\n")
    s = PipSettings.parse(listing, {"HTTPS_PROXY": "http://proxy:3128", "HOME": "/root"})
    assert s.options == {"cert": "/etc/ssl/certs/ca-certificates.crt",
                         "index-url": "http://127.0.0.1:8080/simple", "default-timeout": "180"}
    assert s.proxies == {"HTTPS_PROXY": "http://proxy:3128"}
    assert s.urls() == ["http://127.0.0.1:8080/simple"]
    assert "cert" not in s.fingerprint() and "index-url" in s.fingerprint()
    assert loopback("http://127.0.0.1:8080/simple") and not loopback("https://pypi.org/simple")


def test_the_step_carries_the_certificate_and_local_find_links_and_keys_what_matters(tmp_path):
    cert = tmp_path / "ca.pem"
    cert.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    links = tmp_path / "links"
    links.mkdir()
    (links / "attrs-25.4.0-py3-none-any.whl").write_bytes(b"wheel")
    (links / "notes.txt").write_text("not a package")
    settings = PipSettings(options={"cert": str(cert), "find-links": f"{links} https://x/f",
                                    "index-url": "https://pypi.example/simple"},
                           proxies={"HTTPS_PROXY": "http://proxy:3128"})
    reqs = read_requirements(specs=["attrs"])
    inputs = prepare(reqs, settings)
    assert inputs.files["cert.pem"] == cert.read_bytes()
    assert set(inputs.files) == {"requirements.txt", "cert.pem",
                                 "links/0/attrs-25.4.0-py3-none-any.whl"}
    assert inputs.env == {"PIP_CERT": "/lab-in/cert.pem",
                          "PIP_FIND_LINKS": "/lab-in/links/0 https://x/f",
                          "PIP_INDEX_URL": "https://pypi.example/simple",
                          "HTTPS_PROXY": "http://proxy:3128"}
    assert inputs.network and not inputs.loopback
    # The key: the same inputs give the same one; another requirement, another one; another
    # certificate or proxy (they change how, not what, pip fetches) the same one.
    assert prepare(reqs, settings).key == inputs.key
    assert prepare(read_requirements(specs=["attrs==25.4.0"]), settings).key != inputs.key
    other = dataclasses.replace(settings, proxies={})
    assert prepare(reqs, other).key == inputs.key


def test_a_wheelhouse_means_no_network_and_no_index(tmp_path):
    (tmp_path / "attrs-25.4.0-py3-none-any.whl").write_bytes(b"wheel")
    inputs = prepare(read_requirements(specs=["attrs"], wheelhouse=tmp_path),
                     PipSettings(options={"index-url": "https://pypi.example/simple"}))
    assert not inputs.network
    assert inputs.env == {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/lab-in/wheelhouse"}
    assert "wheelhouse/attrs-25.4.0-py3-none-any.whl" in inputs.files


def test_a_pip_wheel_is_chosen_by_its_requires_python(tmp_path):
    def wheel(version: str, requires: str | None):
        path = tmp_path / f"pip-{version}-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as z:
            meta = "Name: pip\n" + (f"Requires-Python: {requires}\n" if requires else "")
            z.writestr(f"pip-{version}.dist-info/METADATA", meta)
        return path

    new, old = wheel("26.3", ">=3.10"), wheel("25.3", ">=3.9")
    assert not _runs_on(new, "3.9") and _runs_on(new, "3.14") and _runs_on(old, "3.9")


def test_what_was_installed_comes_from_pip_s_report_read_defensively():
    report = {"version": "1", "install": [
        {"metadata": {"name": "numpy", "version": "2.0.2"}, "download_info": {
            "url": "https://files.example/numpy-2.0.2-cp39-cp39-manylinux_2_17_x86_64."
                   "manylinux2014_x86_64.whl",
            "archive_info": {"hashes": {"sha256": "b" * 64}}}},
        {"metadata": {"name": "attrs", "version": "25.4.0"}, "download_info": {
            "url": "file:///lab-in/wheelhouse/attrs-25.4.0-py3-none-any.whl",
            "archive_info": {"hashes": {"sha256": "not-a-hash"}}}},
        {"metadata": {"name": "app", "version": "0.1"},
         "download_info": {"url": "file:///lab-in/project", "dir_info": {}}},
        "junk", {"metadata": "junk"}]}
    got = {i.name: i for i in installed_from(report)}
    assert got["numpy"].tags == "cp39-cp39-manylinux_2_17_x86_64.manylinux2014_x86_64"
    assert got["numpy"].sha256 == "b" * 64 and got["numpy"].version == "2.0.2"
    assert got["attrs"].tags == "py3-none-any" and got["attrs"].sha256 is None
    assert got["app"].tags == "a folder, built here"
    assert installed_from({"install": "nope"}) == ()


NO_WHEEL = """Collecting numpy==2.5.5
ERROR: Could not find a version that satisfies the requirement numpy==2.5.5 (from versions: \
1.26.4, 2.0.0, 2.0.1, 2.0.2)
ERROR: No matching distribution found for numpy==2.5.5
"""


def test_a_requirement_a_target_cannot_have_is_one_line_with_its_tags_and_the_offer():
    t = load_matrix().get("cp39")
    line = explain_failure(NO_WHEEL, target=t, tags=["cp39-cp39-manylinux_2_31_x86_64"],
                           source="index", network="host")
    assert line == ("cp39: no numpy==2.5.5 for cp39-cp39-manylinux_2_31_x86_64: the index "
                    "offers 1.26.4, 2.0.0, 2.0.1, 2.0.2 for these tags")
    assert "\n" not in line
    built = explain_failure("  error: subprocess-exited-with-error\nFailed to build grpcio\n",
                            target=t, tags=["cp39-cp39-linux_x86_64"], source="index",
                            network="host")
    assert "grpcio has no wheel for cp39-cp39-linux_x86_64" in built
    offline = explain_failure(NO_WHEEL.replace("1.26.4, 2.0.0, 2.0.1, 2.0.2", "none"), target=t,
                              tags=[], source="wheelhouse", network="none")
    assert offline.endswith("the wheelhouse offers no version for these tags")
    unreachable = explain_failure(
        "WARNING: Retrying ... NewConnectionError(...): Failed to establish a new connection\n"
        + NO_WHEEL.replace("1.26.4, 2.0.0, 2.0.1, 2.0.2", "none"), target=t, tags=["x"],
        source="index", network="bridge")
    assert "could not be reached from the container (bridge network)" in unreachable
    cert = explain_failure("SSLError(SSLCertVerificationError(1, '[SSL: "
                           "CERTIFICATE_VERIFY_FAILED]", target=t, tags=[], source="index",
                           network="host")
    assert "certificate" in cert and "PIP_CERT" in cert


def test_env_is_name_value_and_leaves_the_lab_s_own_variables_alone():
    assert parse_env(["OMP_NUM_THREADS=1", "X=a=b"]) == (("OMP_NUM_THREADS", "1"), ("X", "a=b"))
    for bad in ("NOEQUALS", "1X=2", "PYTHONPATH=/x", "LAB_DEPS=/x"):
        with pytest.raises(ConfigError, match="--env"):
            parse_env([bad])


def test_a_scenario_file_declares_what_it_requires_and_its_environment(tmp_path):
    f = tmp_path / "needs_numpy.py"
    f.write_text('"""numpy after fork."""\nKIND = "behaviour"\nSTART_METHODS = "each"\n'
                 'DEADLINE_S = 30\nREQUIRES = ["numpy>=1.26"]\nENV = {"OMP_NUM_THREADS": "1"}\n'
                 "def run(ctx):\n    pass\n")
    sf = load_scenario_file(f)
    assert sf.requires == ("numpy>=1.26",) and sf.meta()["env"] == {"OMP_NUM_THREADS": "1"}
    assert json.loads(json.dumps(sf.meta()))["requires"] == ["numpy>=1.26"]
    f.write_text(f.read_text().replace('REQUIRES = ["numpy>=1.26"]', "REQUIRES = 'numpy'"))
    with pytest.raises(ConfigError, match="REQUIRES must be a list"):
        load_scenario_file(f)
