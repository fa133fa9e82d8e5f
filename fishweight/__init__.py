"""fishweight: real-time fish weight prediction that retrains itself, on Apache Flink.

One importable package. The repository's top-level folders are its subpackages
(``pyproject.toml`` maps them with setuptools ``package-dir``):

==========================  ==========================================================
``fishweight.jobs``         ``jobs/``: what a process starts (CLI, prediction job,
                            trainer, simulator, demo, report)
``fishweight.udfs``         ``udfs/``: Flink Python UDFs (validation, prediction)
``fishweight.models``       ``models/``: estimator, training, retraining decisions,
                            model registry, training store, bootstrap model
``fishweight.sql``          ``sql/``: the job's Flink SQL (package data)
``fishweight.runtime``      ``fishweight/runtime/``: plumbing (settings, Flink
                            environment, connector jars, Kafka, embedded broker,
                            child processes, command-line options)
``fishweight.scenarios``    ``fishweight/scenarios/``: simulated factory scenarios
==========================  ==========================================================
"""

__version__ = "0.2.0"
