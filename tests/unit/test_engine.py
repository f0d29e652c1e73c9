"""The engine wrapper's own logic, with no engine: addresses and typed state."""

from __future__ import annotations

import pytest

from lab.engine import ContainerState, Engine, file_mode
from lab.errors import ConfigError
from lab.matrix import EngineSpec


def test_a_context_that_does_not_exist_is_one_clear_error(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    with pytest.raises(ConfigError, match=r"no Docker context named 'nowhere'.*docker context "
                                          r"create"):
        Engine.connect(EngineSpec(name="ci", context="nowhere"))


def test_without_a_docker_config_a_context_cannot_be_found(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # the SDK would look in ./contexts
    with pytest.raises(ConfigError, match="no Docker config"):
        Engine.connect(EngineSpec(name="ci", context="ci"))


def test_tls_needs_the_three_files(tmp_path):
    (tmp_path / "ca.pem").write_text("x")
    with pytest.raises(ConfigError, match=r"cert\.pem, key\.pem missing in cert_path"):
        Engine.connect(EngineSpec(name="b", host="tcp://build:2376", cert_path=str(tmp_path)))


def test_an_unreachable_engine_names_itself_and_its_table(tmp_path):
    from lab.errors import EngineUnavailable

    spec = EngineSpec(name="arm", host=f"unix://{tmp_path}/gone.sock")
    with pytest.raises(EngineUnavailable, match=r"gone\.sock.*fix \[engine\.arm\] in lab\.toml"):
        Engine.connect(spec, ping_timeout=1)


@pytest.mark.parametrize("raw,stopped,code,oom", [
    ({"Status": "running", "ExitCode": 0}, False, None, False),
    ({"Status": "exited", "ExitCode": 137, "OOMKilled": True}, True, 137, True),
    ({"Status": "dead"}, True, -1, False),
])
def test_container_state_is_typed(raw, stopped, code, oom):
    state = ContainerState.from_docker(raw)
    assert (state.stopped, state.exit_code, state.oom_killed) == (stopped, code, oom)


@pytest.mark.parametrize("spec,url,mode", [
    (None, "unix:///var/run/docker.sock", "bind"),  # the environment's local engine
    (None, "tcp://box:2376", "copy"),  # DOCKER_HOST elsewhere
    (EngineSpec(name="a", host="ssh://lab@arm-box"), "ssh://lab@arm-box", "copy"),
    (EngineSpec(name="a", context="ci"), "unix:///run/ci.sock", "bind"),
    (EngineSpec(name="a", host="unix:///fwd.sock", files="copy"), "unix:///fwd.sock", "copy"),
    (EngineSpec(name="a", host="tcp://localhost:2375", files="bind"), "tcp://localhost:2375",
     "bind"),
])
def test_an_engine_sees_this_machine_s_folders_only_through_a_local_socket(spec, url, mode):
    assert file_mode(spec, url) == mode
