import os

import pytest

from fishweight.runtime.settings import Settings, markdown_table


def test_defaults_match_the_reference():
    s = Settings.load()
    assert s.topic_measurement == "machine-measurement"
    assert s.topic_weight == "machine-weight"
    assert s.topic_prediction == "weight-prediction"
    assert s.topic_diff == "weight-diff"
    assert s.topic_retrain == "weight-retrain"
    assert (s.join_bound_s, s.window_s, s.error_threshold, s.retrain_samples) == (60, 60, 0.15, 50)


def test_explicit_beats_environment_beats_default(monkeypatch):
    monkeypatch.setenv("FISHWEIGHT_WINDOW_S", "30")
    monkeypatch.setenv("FISHWEIGHT_PARALLELISM", "2")
    s = Settings.load(window_s=10)
    assert s.window_s == 10.0  # explicit
    assert s.parallelism == 2  # environment, converted to int
    assert s.error_threshold == 0.15  # default


def test_none_means_not_given(monkeypatch):
    monkeypatch.setenv("FISHWEIGHT_ERROR_THRESHOLD", "0.2")
    assert Settings.load(error_threshold=None).error_threshold == 0.2


def test_settings_are_frozen():
    s = Settings.load()
    with pytest.raises(AttributeError):
        s.window_s = 5  # type: ignore[misc]


def test_bad_values_give_clear_errors(monkeypatch):
    monkeypatch.setenv("FISHWEIGHT_WINDOW_S", "one minute")
    with pytest.raises(ValueError, match="FISHWEIGHT_WINDOW_S"):
        Settings.load()
    monkeypatch.delenv("FISHWEIGHT_WINDOW_S")
    with pytest.raises(ValueError, match="window_s must be > 0"):
        Settings.load(window_s=0)
    with pytest.raises(TypeError, match="unknown settings: windw_s"):
        Settings.load(windw_s=1)


def test_derived_paths_follow_state_dir(tmp_path):
    s = Settings.load(state_dir=str(tmp_path))
    assert s.resolved_model_dir == tmp_path / "models"
    assert s.resolved_store_uri == f"sqlite:///{tmp_path.resolve() / 'training.sqlite'}"


def test_settings_page_lists_every_setting():
    from pathlib import Path

    page = (Path(__file__).parent.parent / "docs" / "settings.md").read_text()
    assert markdown_table() in page, (
        "docs/settings.md is out of date: replace its table with the output of "
        "python -m fishweight.runtime.settings")


@pytest.mark.parametrize("changes, problem", [
    ({"topic_diff": "weight-diff', 'properties.x' = 'y"}, "topic_diff"),
    ({"topic_measurement": "a b"}, "topic_measurement"),
    ({"consumer_group": ".."}, "consumer_group"),
    ({"error_threshold": float("nan")}, "error_threshold must be a finite number"),
    ({"window_s": float("inf")}, "window_s must be a finite number"),
    # The trainer refits a changed species on 3 records at least: with 2 it would wait
    # for 2, then fit nothing, and the change rule has fired for that version.
    ({"change_min_records": 2}, "change_min_records must be >= 3"),
    ({"max_clock_skew_s": 100 * 86_400}, "max_clock_skew_s must be below 99 days"),
    ({"restart_attempts": 0}, "restart_attempts must be >= 1"),
    ({"store_uri": "mongodb://mongo:27017", "store_password_file": "/run/secrets/pw"},
     "store_password_file needs a user in store_uri"),
])
def test_names_and_numbers_that_could_break_the_job_are_refused(changes, problem):
    with pytest.raises(ValueError, match=problem):
        Settings.load(**changes)


def test_nan_from_the_environment_is_refused(monkeypatch):
    monkeypatch.setenv("FISHWEIGHT_ERROR_THRESHOLD", "nan")
    with pytest.raises(ValueError, match="finite"):
        Settings.load()


def test_sql_options_are_escaped():
    from fishweight.sql.params import with_options

    assert with_options({"topic": "it's"}) == "'topic' = 'it''s'"


def test_credentials_stay_out_of_repr_logs_and_the_job_environment(tmp_path, caplog,
                                                                     monkeypatch):
    from fishweight.runtime.processes import settings_env
    from fishweight.runtime.settings import redact_uri

    secret = tmp_path / "mongo-password"
    secret.write_text("s3cr&t\n")
    s = Settings.load(store_uri="mongodb://fish@mongo:27017", store_password_file=str(secret))
    assert s.resolved_store_uri == "mongodb://fish:s3cr%26t@mongo:27017"
    assert "s3cr" not in repr(s) and "mongo:27017" not in repr(s)
    assert redact_uri(s.resolved_store_uri) == "mongodb://fish:***@mongo:27017"
    job_env = settings_env(s.replace(store_uri="mongodb://fish:pw@mongo"), trainer=False)
    assert "FISHWEIGHT_STORE_URI" not in job_env
    assert "FISHWEIGHT_STORE_PASSWORD_FILE" not in job_env
    assert not any("pw@mongo" in v for v in job_env.values())
    trainer_env = settings_env(s, trainer=True)
    assert trainer_env["FISHWEIGHT_STORE_PASSWORD_FILE"] == str(secret)
    # Nor does a job inherit them from the environment of the process that starts it.
    monkeypatch.setenv("FISHWEIGHT_STORE_URI", "mongodb://fish:pw@mongo")
    assert "FISHWEIGHT_STORE_URI" not in settings_env(s, trainer=False)
    assert "FISHWEIGHT_STORE_URI" not in s.as_env(trainer=False)
    assert settings_env(s, trainer=True)["FISHWEIGHT_STORE_URI"] == s.store_uri


def test_children_do_not_inherit_pyflinks_process_flags(monkeypatch):
    from fishweight.runtime.processes import inherit_env

    monkeypatch.setenv("PYFLINK_GATEWAY_DISABLED", "true")
    monkeypatch.setenv("_PYFLINK_CONN_INFO_PATH", "/tmp/x")
    env = inherit_env(EXTRA="1")
    assert "PYFLINK_GATEWAY_DISABLED" not in env and "_PYFLINK_CONN_INFO_PATH" not in env
    assert env["EXTRA"] == "1" and env["PATH"] == os.environ["PATH"]


def test_exactly_once_uses_transactions_and_reads_committed_records():
    from fishweight.jobs.connectors import KafkaConnectors

    plain = KafkaConnectors(Settings.load())
    assert all(o["sink.delivery-guarantee"] == "at-least-once"
               for o in plain.sink_options().values())
    assert "properties.isolation.level" not in plain.source_options("machine-measurement", None)
    exact = KafkaConnectors(Settings.load(delivery_guarantee="exactly-once"))
    sinks = exact.sink_options()
    prefixes = {o["sink.transactional-id-prefix"] for o in sinks.values()}
    assert len(prefixes) == len(sinks)  # sinks must not fence each other
    assert all(o["sink.delivery-guarantee"] == "exactly-once"
               and int(o["properties.transaction.timeout.ms"]) <= 900_000
               for o in sinks.values())
    source = exact.source_options("machine-measurement", None)
    assert source["properties.isolation.level"] == "read_committed"


def test_suffixed_renames_every_topic_and_the_consumer_group_only():
    s = Settings.load(state_dir="/tmp/x")
    t = s.suffixed("7-ab", parallelism=2)
    assert t.all_topics == [f"{name}-7-ab" for name in s.all_topics]
    assert t.consumer_group == f"{s.consumer_group}-7-ab"
    assert t.parallelism == 2 and t.state_dir == s.state_dir


def test_every_sink_lingers_as_set_and_a_negative_linger_is_refused():
    from fishweight.jobs.connectors import KafkaConnectors

    assert Settings.load().sink_linger_ms == 5  # Kafka 4.0's producer default
    for linger in (0, 20):
        sinks = KafkaConnectors(Settings.load(sink_linger_ms=linger)).sink_options()
        assert {o["properties.linger.ms"] for o in sinks.values()} == {str(linger)}
    with pytest.raises(ValueError, match="sink_linger_ms must be >= 0"):
        Settings.load(sink_linger_ms=-1)


def test_settings_pass_to_another_process_through_its_environment(monkeypatch):
    """``as_env`` is what ``load`` reads back: the bench's runs get the bench's settings."""
    changed = Settings.load(state_backend="rocksdb", join_bound_s=42.5, sink_linger_ms=0,
                            topic_weight="scale-7")
    for name, value in changed.as_env(trainer=True).items():
        monkeypatch.setenv(name, value)
    assert Settings.load() == changed


def test_logging_drops_kafka_pythons_slow_step_warning_and_keeps_its_other_warnings(tmp_path):
    """kafka-python 3 warns when its network loop's step took over 0.1 s of wall clock,
    which on a busy host is the scheduler (seen in `make demo`'s log); other warnings stay."""
    import logging

    from fishweight.runtime.options import configure_logging

    log_file = tmp_path / "run.log"
    try:
        configure_logging("INFO", log_file)
        configure_logging("INFO", log_file)  # again, as a second command would: one filter
        selector = logging.getLogger("kafka.net.selector")
        assert len(selector.filters) == 1
        selector.warning("Task '<task>' ran for 0.104s (>0.100s threshold). It is blocking "
                         "the event loop -- likely a tight sync loop inside a coroutine. "
                         "Other pollers will time out.")  # kafka-python 3.0.12's words
        selector.warning("Task %s left RUNNING after step; demoting to UNSCHEDULED", "<task>")
        logging.getLogger("kafka.conn").info("connected")  # kafka-python's INFO: off
        logging.getLogger("fishweight").info("ours")
    finally:
        logging.basicConfig(force=True)  # close the file handler
    lines = log_file.read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "WARNING kafka.net.selector: Task <task> left RUNNING after step; demoting to "
        "UNSCHEDULED", "INFO fishweight: ours"]


def test_resume_from_a_path_that_holds_no_snapshot_is_a_clear_error(tmp_path):
    """Not a job that fails at its start, after the JVM and the workers came up."""
    from fishweight.runtime.flink_env import restore_path

    savepoint = tmp_path / "savepoint-1"
    savepoint.mkdir()
    with pytest.raises(FileNotFoundError, match="no savepoint or retained checkpoint there"):
        restore_path(Settings.load(state_dir=str(tmp_path), resume_from=str(savepoint)))
    (savepoint / "_metadata").write_bytes(b"")
    for named in (str(savepoint), savepoint.as_uri(), str(savepoint / "_metadata")):
        assert restore_path(Settings.load(state_dir=str(tmp_path), resume_from=named)) == named
    remote = "s3://bucket/savepoints/savepoint-1"  # not checked here: Flink reads it
    assert restore_path(Settings.load(state_dir=str(tmp_path), resume_from=remote)) == remote
