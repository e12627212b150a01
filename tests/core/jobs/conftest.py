from tests.fixtures.job_worker import runs, workers

__all__ = ["runs", "workers"]
