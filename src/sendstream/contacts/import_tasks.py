"""The `contacts.import` job: runs an uploaded import to the end.

The upload is read back from the database into a local temporary file (so
any worker on any machine can run it), then `import_service.run_import`
commits chunk by chunk through the job's session. When the worker dies the
job's lease runs out, another worker claims it, and the run resumes after
the last committed chunk."""

from __future__ import annotations

import tempfile
import uuid

from sendstream.contacts.imports import JOB_KIND, import_service
from sendstream.core.jobs import JobContext, job


@job(JOB_KIND, max_attempts=5)
async def run_contact_import(ctx: JobContext) -> None:
    import_id = uuid.UUID(str(ctx.job.payload["import_id"]))
    session = ctx.session
    with tempfile.TemporaryFile(prefix="sendstream-import-") as local:
        await import_service.download_upload(session, import_id, local)
        # The job's session commits each chunk: a killed run keeps its
        # finished chunks; the worker commits the final state with the job.
        await import_service.run_import(session, import_id, local, commit=session.commit)
