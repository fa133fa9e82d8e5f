"""`fishweight cluster`: the generated configuration and files, without starting Flink."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fishweight.runtime import cluster, cluster_files
from fishweight.runtime.settings import Settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings.load(state_dir=str(tmp_path / "state"), web_ui_port=18081, parallelism=3)


def test_flatten_yaml_reads_nested_scalars_and_skips_comments():
    text = ("# comment\nenv:\n  java:\n    opts:\n      all: --add-opens=a=b\n"
            "jobmanager:\n  rpc:\n    address: localhost\n    port: 6123\n"
            "  memory:\n    process:\n      size: 1600m\n\nrest:\n  address: 'localhost'\n")
    assert cluster_files.flatten_yaml(text) == {
        "env.java.opts.all": "--add-opens=a=b",
        "jobmanager.rpc.address": "localhost",
        "jobmanager.rpc.port": "6123",
        "jobmanager.memory.process.size": "1600m",
        "rest.address": "localhost",
    }


def test_pyflinks_default_config_flattens_with_its_java_17_options():
    shipped = cluster_files.pyflink_home() / "conf" / "config.yaml"
    defaults = cluster_files.flatten_yaml(shipped.read_text())
    assert "--add-opens=java.base/java.util=ALL-UNNAMED" in defaults["env.java.opts.all"]
    assert defaults["taskmanager.numberOfTaskSlots"] == "1"


def test_cluster_config_is_private_loopback_and_uses_this_python(settings):
    paths = cluster_files.ClusterPaths.for_settings(settings)
    defaults = {"env.java.opts.all": "--add-opens=x", "rest.address": "localhost",
                "taskmanager.numberOfTaskSlots": "1"}
    conf = cluster_files.cluster_config(settings, paths, rest_port=18081, rpc_port=40123,
                                  python="/venv/bin/python", defaults=defaults)
    assert conf["env.java.opts.all"] == "--add-opens=x"  # kept from pyflink's file
    assert conf["rest.port"] == "18081"
    assert conf["jobmanager.rpc.port"] == "40123"
    for key in ("rest.address", "rest.bind-address", "jobmanager.rpc.address",
                "jobmanager.bind-host", "taskmanager.bind-host", "taskmanager.host"):
        assert conf[key] == "127.0.0.1", key
    assert conf["taskmanager.numberOfTaskSlots"] == "3"  # max(2, parallelism)
    assert conf["taskmanager.load-balance.mode"] == "SLOTS"  # a job spread over them
    assert conf["python.executable"] == conf["python.client.executable"] == "/venv/bin/python"
    assert conf["jobmanager.memory.process.size"] == cluster_files.JOBMANAGER_MEMORY
    assert conf["taskmanager.memory.process.size"] == cluster_files.TASKMANAGER_MEMORY
    assert conf["execution.checkpointing.dir"] == settings.resolved_checkpoint_uri
    assert conf["execution.checkpointing.savepoint-dir"].endswith("/checkpoints/savepoints")
    assert conf["env.pid.dir"] == str(paths.pid)
    assert conf["env.log.dir"] == str(paths.log)
    assert str(paths.root) == os.path.realpath(settings.state_dir) + "/cluster"


def test_at_least_two_slots(tmp_path):
    s = Settings.load(state_dir=str(tmp_path))
    conf = cluster_files.cluster_config(s, cluster_files.ClusterPaths.for_settings(s), rest_port=1,
                                  rpc_port=2, python="python")
    assert conf["taskmanager.numberOfTaskSlots"] == "2"


def test_rendered_config_is_flat_quoted_yaml():
    text = cluster_files.render_config({"b.key": "it's \"quoted\"", "a.port": "8081",
                                  "env.java.opts.all": "--add-opens=java.base/java.lang=ALL"})
    lines = text.splitlines()
    assert lines[0].startswith("#")
    assert lines[1:] == ['a.port: "8081"',
                         'b.key: "it\'s \\"quoted\\""',
                         'env.java.opts.all: "--add-opens=java.base/java.lang=ALL"']
    yaml = pytest.importorskip("yaml")  # what Flink's strict YAML 1.2 parser will see
    assert yaml.safe_load(text) == {"a.port": "8081", "b.key": "it's \"quoted\"",
                                    "env.java.opts.all": "--add-opens=java.base/java.lang=ALL"}


def test_lib_holds_pyflinks_jars_plus_flink_python(tmp_path):
    for name in ("lib/flink-dist-2.0.1.jar", "lib/flink-json-2.0.1.jar",
                 "opt/flink-python-2.0.1.jar", "opt/flink-sql-client-2.0.1.jar"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).touch()
    assert [p.name for p in cluster_files.lib_jars(tmp_path)] == [
        "flink-dist-2.0.1.jar", "flink-json-2.0.1.jar", "flink-python-2.0.1.jar"]
    (tmp_path / "opt/flink-python-2.0.1.jar").unlink()
    with pytest.raises(cluster_files.ClusterError, match="flink-python"):
        cluster_files.lib_jars(tmp_path)


def test_prepare_writes_conf_lib_and_a_wrapper(settings):
    paths = cluster_files.prepare(settings, rest_port=18081, rpc_port=40123)
    pyflink = cluster_files.pyflink_home()
    text = (paths.conf / "config.yaml").read_text()
    assert 'rest.port: "18081"' in text
    assert (paths.conf / "log4j.properties").is_file()
    links = sorted(p.name for p in paths.lib.iterdir())
    assert any(n.startswith("flink-python") for n in links)
    assert len([n for n in links if n.startswith("flink-dist")]) == 1
    assert all((paths.lib / n).resolve().is_file() for n in links)
    wrapper = paths.flink.read_text()
    assert f"export FLINK_CONF_DIR='{paths.conf}'" in wrapper
    assert f"export FLINK_LIB_DIR='{paths.lib}'" in wrapper
    assert f"exec '{pyflink}/bin/flink'" in wrapper
    assert os.access(paths.flink, os.X_OK)
    # The wrapper is valid sh.
    subprocess.run(["sh", "-n", str(paths.flink)], check=True)
    # Preparing again replaces the links instead of adding to them.
    cluster_files.prepare(settings, rest_port=18081, rpc_port=40124)
    assert sorted(p.name for p in paths.lib.iterdir()) == links


def test_status_without_a_cluster_is_not_running(settings):
    current = cluster.status(settings)
    assert not current.running
    assert current.lines() == ["Flink cluster: not running"]


def test_foreign_pids_are_never_owned(settings):
    paths = cluster_files.ClusterPaths.for_settings(settings)
    paths.pid.mkdir(parents=True)
    # Our own pid is alive but its command line does not name the cluster's conf dir.
    paths.pid_file("jobmanager").write_text(f"{os.getpid()}\n")
    assert cluster.owned_pids(paths, "jobmanager") == []
    assert cluster.stop(settings) == ["Flink cluster: not running"]


def test_cli_status_exit_code_3_when_not_running(settings, capsys):
    from fishweight.jobs.cli import main

    assert main(["cluster", "status", "--state-dir", settings.state_dir]) == 3
    assert "not running" in capsys.readouterr().out


def test_state_file_round_trip(settings):
    paths = cluster_files.ClusterPaths.for_settings(settings)
    paths.root.mkdir(parents=True)
    paths.state_file.write_text(json.dumps({"url": "http://127.0.0.1:18081"}))
    assert cluster.status(settings).url == "http://127.0.0.1:18081"


def test_stop_signals_only_processes_started_with_this_conf_dir(settings):
    paths = cluster_files.ClusterPaths.for_settings(settings)
    paths.pid.mkdir(parents=True)
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)", "--configDir"]
    ours = subprocess.Popen([*sleeper, str(paths.conf)])
    other = subprocess.Popen([*sleeper, str(paths.conf) + "-other"])
    try:
        paths.pid_file("taskmanager").write_text(f"{ours.pid}\n{other.pid}\n")
        assert cluster.owned_pids(paths, "taskmanager") == [ours.pid]
        assert cluster.stop(settings) == [f"Flink cluster stopped (pids {ours.pid})"]
        assert ours.wait(timeout=10) == -15  # SIGTERM
        assert other.poll() is None
        assert not paths.pid_file("taskmanager").exists()
    finally:
        for proc in (ours, other):
            proc.kill()
            proc.wait()
