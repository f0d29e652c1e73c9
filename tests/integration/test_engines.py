"""Engines as configuration: lab.toml's [engine.NAME] reached through a unix:// host and a
Docker CLI context (made with the SDK, no docker CLI), each checked by `lab doctor`."""

from __future__ import annotations

import os

from docker.context import ContextAPI

from lab.engine import endpoint

from .conftest import lab


def test_doctor_checks_every_engine_by_host_and_by_context(engine, tmp_path):
    socket_url = endpoint()
    config = tmp_path / "docker-config"
    config.mkdir()
    (config / "config.json").write_text("{}")
    env = {**os.environ, "DOCKER_CONFIG": str(config)}
    os.environ["DOCKER_CONFIG"] = str(config)  # where the SDK writes the context
    try:
        ContextAPI.create_context("lab-second", host=socket_url)
    finally:
        del os.environ["DOCKER_CONFIG"]
    toml = tmp_path / "lab.toml"
    toml.write_text(f'[engine.by-host]\nhost = "{socket_url}"\n\n'
                    '[engine.by-context]\ncontext = "lab-second"\ntiming = false\n\n'
                    f'[engine.gone]\nhost = "unix://{tmp_path}/no-engine.sock"\n')
    r = lab("doctor", "--config", str(toml), env=env, timeout=120)
    lines = r.stdout.splitlines()
    facts = engine.facts()
    by_host = next(x for x in lines if "engine by-host:" in x)
    by_context = next(x for x in lines if "engine by-context:" in x)
    gone = next(x for x in lines if "engine gone:" in x)
    assert by_host.startswith("[ok  ]") and f"engine {facts.version}" in by_host
    assert f"{facts.cpus} CPUs" in by_host and facts.storage_driver in by_host
    assert by_context.startswith("[ok  ]") and "(context lab-second)" in by_context
    assert "no timing cells" in by_context
    assert gone.startswith("[FAIL]") and "no-engine.sock" in gone
    assert r.returncode == 1  # one engine failed; the others were still checked
    # Only the engines asked for.
    r = lab("doctor", "--config", str(toml), "--engines", "by-context", env=env, timeout=120)
    assert "engine by-context:" in r.stdout and "engine by-host:" not in r.stdout

