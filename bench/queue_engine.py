"""Measure the task-queue engine on the real broker: Dramatiq on RabbitMQ (what `monitor worker` uses).

Two figures that chose the engine (README "Scaling out"):
- throughput: N no-op tasks enqueued, one worker process (8 threads) consumes them; tasks/s from the first
  to the last completion, and how many were lost or done twice (each task appends its id to a file);
- redelivery: a worker is killed with SIGKILL while a task runs; the time until a second worker starts the
  same task again (Dramatiq acks after processing, so RabbitMQ hands the unacked message on when the dead
  worker's connection closes).

    python bench/queue_engine.py                       # amqp://guest:guest@127.0.0.1:5672/
    python bench/queue_engine.py --tasks 5000 --broker amqp://...
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

DEFAULT_BROKER = os.environ.get("MONITOR_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")


def _actors(broker_url: str, queue: str, out_dir: str):  # noqa: ANN202 - used by both sides
    import dramatiq
    from dramatiq.brokers.rabbitmq import RabbitmqBroker
    from dramatiq.middleware import AgeLimit, Retries, ShutdownNotifications, TimeLimit

    broker = RabbitmqBroker(
        url=broker_url, middleware=[AgeLimit(), TimeLimit(), ShutdownNotifications(), Retries()]
    )
    dramatiq.set_broker(broker)

    @dramatiq.actor(queue_name=queue, max_retries=0)
    def noop(task: int) -> None:
        with open(Path(out_dir) / f"done-{os.getpid()}.txt", "a") as handle:
            handle.write(f"{task} {time.time():.6f}\n")

    @dramatiq.actor(queue_name=queue, max_retries=0, time_limit=120_000)
    def slow(task: str) -> None:
        with open(Path(out_dir) / f"slow-{os.getpid()}.txt", "a") as handle:
            handle.write(f"start {task} {time.time():.6f}\n")
            handle.flush()
        time.sleep(5)
        with open(Path(out_dir) / f"slow-{os.getpid()}.txt", "a") as handle:
            handle.write(f"done {task} {time.time():.6f}\n")

    return broker, noop, slow


def worker_main(broker_url: str, queue: str, out_dir: str, threads: int) -> None:
    import dramatiq

    broker, _, _ = _actors(broker_url, queue, out_dir)
    worker = dramatiq.Worker(broker, worker_threads=threads, queues={queue})
    worker.start()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    (Path(out_dir) / f"ready-{os.getpid()}").touch()
    while not stop:
        time.sleep(0.1)
    worker.stop(timeout=5000)


def _spawn(broker_url: str, queue: str, out_dir: str, threads: int) -> subprocess.Popen:
    here = str(Path(__file__).parent)
    code = (
        f"import sys; sys.path.insert(0, {here!r}); import queue_engine as q; "
        f"q.worker_main({broker_url!r}, {queue!r}, {out_dir!r}, {threads})"
    )
    process = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 30
    while not (Path(out_dir) / f"ready-{process.pid}").exists():
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("worker did not start")
        time.sleep(0.05)
    return process


def _lines(out_dir: str, prefix: str) -> list[str]:
    return [line for path in Path(out_dir).glob(f"{prefix}-*.txt") for line in path.read_text().splitlines()]


def throughput(broker_url: str, tasks: int, threads: int) -> dict:
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as out_dir:
        broker, noop, _ = _actors(broker_url, queue, out_dir)
        broker.declare_queue(queue)
        started = time.time()
        for task in range(tasks):
            noop.send(task)
        enqueued = time.time() - started
        worker = _spawn(broker_url, queue, out_dir, threads)
        deadline = time.monotonic() + 300
        while len(_lines(out_dir, "done")) < tasks and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        lines = _lines(out_dir, "done")
        ids = [int(line.split()[0]) for line in lines]
        stamps = sorted(float(line.split()[1]) for line in lines)
        broker.channel.queue_delete(queue)
        broker.close()
    seconds = stamps[-1] - stamps[0] if len(stamps) > 1 else float("nan")
    return {
        "tasks": tasks,
        "enqueue_per_s": round(tasks / enqueued, 1),
        "consume_per_s": round(len(ids) / seconds, 1),
        "lost": tasks - len(set(ids)),
        "doubled": len(ids) - len(set(ids)),
    }


def redelivery(broker_url: str) -> dict:
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as out_dir:
        broker, _, slow = _actors(broker_url, queue, out_dir)
        broker.declare_queue(queue)
        first = _spawn(broker_url, queue, out_dir, 1)
        second = _spawn(broker_url, queue, out_dir, 1)
        slow.send("victim")
        deadline = time.monotonic() + 30
        while not _lines(out_dir, "slow") and time.monotonic() < deadline:
            time.sleep(0.02)
        victim_file = next(Path(out_dir).glob("slow-*.txt"))
        victim = first if str(first.pid) in victim_file.name else second
        survivor = second if victim is first else first
        victim.kill()  # SIGKILL mid-task
        killed_at = time.time()
        victim.wait()
        deadline = time.monotonic() + 60
        restarted = None
        while time.monotonic() < deadline:
            starts = [line for line in _lines(out_dir, "slow") if line.startswith("start")]
            if len(starts) >= 2:
                restarted = float(sorted(starts, key=lambda s: float(s.split()[2]))[-1].split()[2])
                break
            time.sleep(0.02)
        while time.monotonic() < deadline and not any(
            line.startswith("done") for line in _lines(out_dir, "slow")
        ):
            time.sleep(0.1)
        done = sum(line.startswith("done") for line in _lines(out_dir, "slow"))
        survivor.send_signal(signal.SIGTERM)
        survivor.wait(timeout=30)
        broker.channel.queue_delete(queue)
        broker.close()
    return {
        "redelivered_after_s": None if restarted is None else round(restarted - killed_at, 2),
        "completed": done,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--broker", default=DEFAULT_BROKER)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = {
        "engine": "dramatiq on rabbitmq",
        "throughput": throughput(args.broker, args.tasks, args.threads),
        "sigkill": redelivery(args.broker),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
