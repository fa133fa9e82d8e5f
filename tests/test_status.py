"""What ``fishweight status`` prints from the figures it read (jobs/status.py)."""

from __future__ import annotations

from fishweight.jobs.status import JobStatus, _combine, lines


def _status(metrics):
    return JobStatus("http://127.0.0.1:8081", job_id="j1", state="RUNNING", uptime_s=75,
                     restarts=0, metrics=metrics,
                     sources={"measurements": {"records": 40, "lag_s": 1.5}})


def test_species_names_with_dots_keep_their_own_lines():
    printed = "\n".join(lines(_status({
        "modelVersion": 2, "modelAgeSeconds": 30,
        "species.S. salar.joinedPairs": 40, "species.S. salar.windowErrorAvgPpm": 120_000,
        "species.S. trutta.joinedPairs": 7, "species.S. trutta.changeErrorsOver": 1,
        "species.S. trutta.biasLeanPpm": -41_000})))
    assert "  S. salar: joined 40, error: current window 0.120" in printed
    assert "  S. trutta: joined 7," in printed and "1 over the threshold" in printed
    assert "bias rule lean -0.041;" in printed and "bias rule lean -;" in printed
    assert "  S:" not in printed


def test_a_job_that_scored_no_batch_yet_names_no_model_version():
    printed = "\n".join(lines(_status({"predictions": 0})))
    assert "model - (no batch scored yet)" in printed and "model v0" not in printed
    assert "model v3, live for 12 s" in "\n".join(lines(_status(
        {"modelVersion": 3, "modelAgeSeconds": 12})))


def test_subtasks_combine_counters_summed_versions_largest_and_the_newest_models_age():
    combined = _combine({"predictions": [3, 4], "modelVersion": [2, 3],
                         "modelAgeSeconds": [600, 2], "species.a.windowErrorAvgPpm": [-1, 5]})
    assert combined == {"predictions": 7, "modelVersion": 3, "modelAgeSeconds": 2,
                        "species.a.windowErrorAvgPpm": 5}
