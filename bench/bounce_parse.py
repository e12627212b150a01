"""Bounce parsing and classification: `classify_message` over 100,000
inbound reports of mixed formats.

    .venv/bin/python bench/bounce_parse.py [--messages 100000] [--workers N]

The messages are the labelled corpus (tests/bounces/corpus: DSNs, ARF
complaints, auto-replies and the non-DSN notices of 30+ MTAs and
providers) replicated to the count, each copy made unique (its recipient
and the returned Message-ID change), in a fixed shuffled order. They are
built before the clock starts; the timed part is only `classify_message`
on bytes, as the MX and the IMAP poller call it. The script measures one
core first (`single_core_msgs_per_s`), then one worker process per core
(`--workers 0`, the default), as `sendstream worker` processes share the
`bounces.process` jobs. `accuracy_pct` is the corpus test's figure
(every labelled answer right), computed here again.

On a shared machine wall-clock rates swing with the neighbours' load, so
the script also reports `cpu_us_per_msg`: `time.process_time` of one
process classifying the first 10,000 messages, the best of three passes
(the goal is at most ~350 us of CPU a message on each of 2 cores).

The last line printed is one flat JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import platform
import random
import resource
import sys
import time

from support import ROOT, log

from sendstream.bounces.parse import classify_message

CORPUS = ROOT / "tests" / "bounces" / "corpus"
GOAL = 5000


def corpus() -> list[bytes]:
    return [path.read_bytes() for path in sorted(CORPUS.glob("*.eml"))]


def replicate(samples: list[bytes], count: int) -> list[bytes]:
    rng = random.Random(6)
    out = []
    for n in range(count):
        raw = samples[n % len(samples)]
        out.append(
            raw.replace(b"ada@example.com", f"ada{n}@example.com".encode()).replace(
                b"@mail.example.org>", f".{n}@mail.example.org>".encode()
            )
        )
    rng.shuffle(out)
    return out


def accuracy() -> float:
    with (CORPUS / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    right = 0
    reports = {}
    for row in rows:
        if row["file"] not in reports:
            reports[row["file"]] = classify_message((CORPUS / row["file"]).read_bytes())
        for verdict in reports[row["file"]].verdicts:
            if (verdict.recipient or "").lower() != row["recipient"].lower():
                continue
            got = (
                verdict.kind,
                "" if verdict.hard is None else str(verdict.hard).lower(),
                verdict.reason.value,
                verdict.status or "",
            )
            right += got == (row["kind"], row["hard"], row["reason"], row["status"])
            break
    return 100.0 * right / len(rows)


def run_chunk(messages: list[bytes]) -> tuple[int, int]:
    bounces = 0
    for raw in messages:
        report = classify_message(raw)
        bounces += sum(v.kind == "bounce" for v in report.verdicts)
    return len(messages), bounces


def cpu_per_message(messages: list[bytes], passes: int = 3) -> float:
    """Microseconds of this process's CPU time per message, best pass."""
    best = float("inf")
    for _ in range(passes):
        start = time.process_time()
        run_chunk(messages)
        best = min(best, time.process_time() - start)
    return best / len(messages) * 1e6


def timed(messages: list[bytes], workers: int) -> tuple[float, int]:
    if workers <= 1:
        start = time.perf_counter()
        _, bounces = run_chunk(messages)
        return time.perf_counter() - start, bounces
    chunks = [messages[i::workers] for i in range(workers)]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers) as pool:
        pool.map(run_chunk, [m[:10] for m in chunks])  # warm the workers
        start = time.perf_counter()
        results = pool.map(run_chunk, chunks)
        elapsed = time.perf_counter() - start
    return elapsed, sum(b for _, b in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=0, help="0: decide from the 1-core rate")
    args = parser.parse_args()

    samples = corpus()
    messages = replicate(samples, args.messages)
    size_mb = sum(map(len, messages)) / 1e6
    log(f"{len(samples)} corpus messages replicated to {len(messages)} ({size_mb:.0f} MB)")
    acc = accuracy()
    log(f"corpus accuracy {acc:.1f}%")

    probe = messages[: min(len(messages), 10_000)]
    elapsed, _ = timed(probe, 1)
    single = len(probe) / elapsed
    log(f"one core: {single:,.0f} msg/s on {len(probe)} messages")
    cpu_us = cpu_per_message(probe)
    log(f"one core: {cpu_us:.0f} us of CPU per message (best of 3 passes)")
    workers = args.workers or (os.cpu_count() or 1)
    elapsed, bounces = timed(messages, workers)
    rate = len(messages) / elapsed
    log(f"{workers} worker(s): {rate:,.0f} msg/s, {bounces} bounce verdicts")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "messages": len(messages),
                "msgs_per_s": round(rate),
                "single_core_msgs_per_s": round(single),
                "cpu_us_per_msg": round(cpu_us, 1),
                "peak_rss_mb": round(max(peak, children), 1),
                "accuracy_pct": round(acc, 1),
                "corpus_messages": len(samples),
                "workers": workers,
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
            }
        ),
        flush=True,
    )
    sys.exit(0)


if __name__ == "__main__":
    main()
