from __future__ import annotations

import random

from sendstream.core.jobs.worker import Worker
from sendstream.core.settings import Settings


class TestBackoff:
    def test_backoff_is_full_jitter_under_an_exponential_ceiling(self, settings: Settings) -> None:
        tuned = settings.model_copy(
            update={
                "jobs": settings.jobs.model_copy(
                    update={"backoff_base_seconds": 2.0, "backoff_max_seconds": 100.0}
                )
            }
        )
        worker = Worker(settings=tuned)
        random.seed(7)
        for attempt in range(1, 12):
            ceiling = min(100.0, 2.0 * 2**attempt)
            draws = [worker._backoff(attempt) for _ in range(200)]
            assert all(0 <= d <= ceiling for d in draws)
            # Spread over the whole range, not bunched at the ceiling.
            assert min(draws) < ceiling * 0.1
            assert max(draws) > ceiling * 0.9
