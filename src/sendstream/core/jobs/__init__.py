"""The durable job queue: jobs are rows in PostgreSQL.

Contracts:
- `enqueue` / `enqueue_many` write in the caller's transaction; a rollback
  drops the job and its wake-up NOTIFY alike.
- Delivery is at least once; handlers take ids and are idempotent (reload by
  id, check whether the work is done). Writes through `ctx.session` commit
  together with the job's success.
- A job ends `succeeded`, `dead` (attempts exhausted, or unknown kind) or
  `cancelled`; until then it is `queued` or `running` under a lease.
"""

from sendstream.core.jobs.queue import enqueue, enqueue_many
from sendstream.core.jobs.registry import Cancel, JobContext, JobInfo, Retry, job

__all__ = ["Cancel", "JobContext", "JobInfo", "Retry", "enqueue", "enqueue_many", "job"]
