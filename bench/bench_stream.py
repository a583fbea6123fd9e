"""Benchmark of the stream processors on the real tansu broker.

Measures, in one run:

1. **Feedback throughput** of the full feedback path (worker subprocess:
   consume, validate, embed, apply, upsert, flush, publish states, commit),
   against two limits measured on the same events: a raw kafka-python consume
   (+ ``json.loads``) of the same topic, and raw batched embedding of the same
   texts (3 per event, batches of the worker's size, alone on the machine), in
   both layouts (one call on torch's thread team; shards on one-core threads)
   with the faster one as the limit. Reports the ratio to the tighter limit
   (goal >= 0.8). The events are produced as a backlog while the worker is
   stopped (SIGSTOP), and the clock starts when it continues: the load
   generator is not part of the path, and the raw consume reads a filled topic
   too.
2. **First-feedback-to-prototype-visible latency** at a steady 100 events/s
   (``--rate``; on a loaded machine the path may not sustain 100/s, then the
   queue grows and the latency says only that):
   from producing a new user's first event to the first PersonaState on
   ``pgenrm.personas.v1`` that names a prototype for that user (goal p95 <= 2 s).
   The offered rate over the full-path rate of phase 1 is reported beside it;
   when 100/s is above 70 % of that rate (``--sustainable-fraction``), a second
   phase runs at 70 % of it, so the latency the path adds while the machine
   keeps up is measured too, not only the queue of an overloaded one.
3. **Reward worker overhead** beyond model time: end-to-end request->result
   latency minus the generation time the worker reports (``model_ms``), p95
   (goal <= 50 ms); and cold-start vs known-user latency at the same m, n.

The worker runs with ``PGENRM_STREAM_TRACE=true``: every feedback batch and
reward request logs its stage timings, and the JSON's ``trace`` section
summarises them per phase (batch sizes, lag from produce to handling, time per
stage), which says where the latency goes; ``<phase>/gc0`` .. ``gc2`` hold the
worker's garbage collections (``n`` and ``total_ms`` summed, ``max_ms`` at most).

Run: ``.venv/bin/python bench/bench_stream.py [--events 6000] [--worker-env KEY=VALUE ...]``.
Writes ``out/bench_stream.json`` (``--json NAME`` to rename) and ``out/bench_stream.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from infra.contracts import (  # noqa: E402
    ChatMessage,
    FeedbackEvent,
    PersonaState,
    RewardOverrides,
    RewardRequest,
    RewardResult,
)
from infra.settings import BrokerSettings, ModelSettings, Settings  # noqa: E402
from prototypes.embedder import EmbedderDtype, EmbedderGraph  # noqa: E402

console = Console()

CLIENT_FETCH_WAIT_MS = 20
"""``fetch_max_wait_ms`` of the bench's consumers. tansu holds an empty Fetch for
the whole wait even when records arrive: at kafka-python's default 500 ms a
result produced after seconds of silence reached the client 40-250 ms late."""

THROUGHPUT_FETCH_WAIT_MS = 250
"""``fetch_max_wait_ms`` of the throughput phase's observer. The bench, the broker
and the worker share the machine: at 20 ms the observer's polling took 0.11 cores
in the bench and about 0.05 in the broker (per-thread CPU, AMX box), and the path
measured 7 % slower. Finishing up to 250 ms late is under 2 % of that phase."""

SUBJECTS = [
    "a trip",
    "dinner",
    "a workout",
    "my budget",
    "a laptop",
    "a garden",
    "an essay",
    "a meeting",
    "a bike",
    "a birthday",
    "my code",
    "a move",
    "a course",
    "a podcast",
]
ASKS = [
    "How do I plan",
    "Any advice on",
    "What matters most for",
    "Help me choose",
    "Quick tips for",
    "Explain how to handle",
]
STYLES = {
    "short": "Keep it short: {s} needs three steps, nothing more.",
    "long": "There are many angles to {s}; first consider the context, then the constraints, "
    "then the options in detail, and finally weigh each trade-off carefully before "
    "committing to a plan that you revisit after a week.",
    "formal": "Regarding {s}, I would recommend a structured approach with clear milestones.",
    "casual": "Honestly? For {s} just wing it a bit and see what feels fun, no stress!",
}


def make_events(n: int, users: int, seed: int = 0, prefix: str = "b") -> list[FeedbackEvent]:
    """Synthetic, project-written feedback: each user prefers one style over another."""
    rng = random.Random(seed)
    prefs = {}
    keys = list(STYLES)
    for u in range(users):
        a, b = rng.sample(keys, 2)
        prefs[u] = (a, b)
    out = []
    for i in range(n):
        u = i % users
        a, b = prefs[u]
        s = rng.choice(SUBJECTS)
        q = f"{rng.choice(ASKS)} {s}? (#{i})"
        out.append(
            FeedbackEvent(
                event_id=f"{prefix}-{i}",
                user_id=f"{prefix}-user-{u}",
                context=[ChatMessage(role="user", content=q)],
                chosen=STYLES[a].format(s=s) + f" [{i}]",
                rejected=STYLES[b].format(s=s) + f" [{i}]",
                critique="more like this" if i % 5 == 0 else None,
            )
        )
    return out


class Watcher:
    """PersonaState follower: first time each user's state names a prototype, last counts."""

    def __init__(self, settings: Settings, fetch_wait_ms: int = CLIENT_FETCH_WAIT_MS) -> None:
        from kafka import TopicPartition

        from infra.kafka import make_consumer, seek_to_highwater
        from infra.topics import PERSONAS

        self.c = make_consumer(
            settings,
            group_id=None,
            max_poll_records=5000,
            fetch_max_wait_ms=fetch_wait_ms,
        )
        parts = self.c.partitions_for_topic(PERSONAS) or set()
        self.c.assign([TopicPartition(PERSONAS, p) for p in sorted(parts)])
        seek_to_highwater(self.c)
        self.applied: dict[str, int] = {}
        self.first_proto: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, name="watcher", daemon=True)
        self.t.start()

    def run(self) -> None:
        while not self.stop.is_set():
            for recs in self.c.poll(timeout_ms=100).values():
                now = time.perf_counter()
                for r in recs:
                    st = PersonaState.model_validate_json(r.value)
                    with self.lock:
                        self.applied[st.user_id] = max(
                            self.applied.get(st.user_id, 0), st.events_applied
                        )
                        if st.prototype_id is not None and st.user_id not in self.first_proto:
                            self.first_proto[st.user_id] = now

    def wait_applied(self, expected: dict[str, int], timeout_s: float) -> float:
        end = time.perf_counter() + timeout_s
        while True:
            with self.lock:
                done = all(self.applied.get(u, 0) >= n for u, n in expected.items())
            if done:
                return time.perf_counter()
            if time.perf_counter() > end:
                with self.lock:
                    got = sum(min(self.applied.get(u, 0), n) for u, n in expected.items())
                raise TimeoutError(f"applied {got}/{sum(expected.values())} in {timeout_s}s")
            time.sleep(0.02)

    def close(self) -> None:
        self.stop.set()
        self.t.join(5)
        self.c.close()


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(round(q * (len(s) - 1)), len(s) - 1)]


def cpu_seconds(pids: dict[str, int | None]) -> dict[str, float]:
    """User + system CPU seconds so far of each named process (Linux ``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return out


def child_pids(pid: int) -> list[int]:
    """Pids of a process's children (embedding shard processes, the resource tracker)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return sorted(out)


def pss_mb(pid: int) -> float | None:
    """Proportional set size of a process in MB (shared pages split among their users)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def worker_memory(pid: int) -> dict[str, float | None]:
    """PSS in MB of the worker and of its child processes together (embedding shards)."""
    children = [m for c in child_pids(pid) if (m := pss_mb(c)) is not None]
    return {"worker_pss_mb": pss_mb(pid), "children_pss_mb": sum(children) if children else 0.0}


def thread_seconds(pid: int) -> dict[str, float]:
    """CPU seconds so far of a process's threads, summed by thread name (``/proc``).

    Threads of its child processes count as ``child/<name>``.
    """
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for owner, prefix in [(pid, ""), *((c, "child/") for c in child_pids(pid))]:
        for stat in Path(f"/proc/{owner}/task").glob("*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            name = prefix + text[text.index("(") + 1 : text.rindex(")")]
            fields = text.rsplit(")", 1)[1].split()
            out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def own_thread_seconds() -> dict[str, float]:
    """CPU seconds so far of this process's Python threads, by Python thread name."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for t in threading.enumerate():
        try:
            text = Path(f"/proc/self/task/{t.native_id}/stat").read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        name = t.name.split(" (")[0]
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def machine_ticks() -> tuple[int, int]:
    """(all, stolen) CPU ticks of the machine so far (``/proc/stat``; steal: the hypervisor's)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


Reading = tuple[dict[str, float], tuple[int, int], dict[str, float], dict[str, float]]


def read_cpu(pids: dict[str, int | None]) -> Reading:
    """CPU seconds of the processes, the machine's ticks, the worker's and the bench's threads."""
    worker = pids.get("worker")
    threads = thread_seconds(worker) if worker else {}
    procs = cpu_seconds(pids)
    if worker:
        children = cpu_seconds({str(c): c for c in child_pids(worker)})
        procs["worker_children"] = sum(children.values())
    return procs, machine_ticks(), threads, own_thread_seconds()


def cores_used(before: Reading, after: Reading, seconds: float) -> dict[str, Any]:
    """Cores each process (and each of the worker's thread names) used between two readings.

    ``stolen_share``: the share of the machine's ticks the hypervisor took.
    """
    out: dict[str, Any] = {
        k: (after[0][k] - before[0][k]) / seconds for k in before[0] if k in after[0]
    }
    total = after[1][0] - before[1][0]
    out["stolen_share"] = (after[1][1] - before[1][1]) / total if total > 0 else 0.0
    for key, was, now in (
        ("worker_threads", before[2], after[2]),
        ("bench_threads", before[3], after[3]),
    ):
        threads = {k: (v - was.get(k, 0.0)) / seconds for k, v in now.items()}
        out[key] = {k: v for k, v in sorted(threads.items()) if v >= 0.005}
    return out


def cpu_description() -> dict[str, Any]:
    """CPU model, cores and the bf16 features that decide MiniLM's speed."""
    from infra.hardware import usable_cores

    info: dict[str, Any] = {"cores": usable_cores()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            info["model"] = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
            info["amx"] = "amx_bf16" in flags
            info["avx512_bf16"] = "avx512_bf16" in flags
            break
    return info


def raw_consume_rate(settings: Settings, topic: str, n: int) -> float:
    from kafka import TopicPartition

    from infra.kafka import make_consumer

    c = make_consumer(
        settings, group_id=None, max_poll_records=5000, fetch_max_bytes=50 * 1024 * 1024
    )
    parts = c.partitions_for_topic(topic) or set()
    c.assign([TopicPartition(topic, p) for p in sorted(parts)])
    c.seek_to_beginning()
    got = 0
    t0 = time.perf_counter()
    while got < n and time.perf_counter() - t0 < 120:
        for recs in c.poll(timeout_ms=500).values():
            for r in recs:
                json.loads(r.value)
                got += 1
    dt = time.perf_counter() - t0
    c.close()
    return got / dt


def raw_embed_rate(
    events: list[FeedbackEvent],
    batch: int,
    embed_batch: int,
    dtype: EmbedderDtype = "auto",
    workers: int = 1,
    graph: EmbedderGraph = "traced",
    pin: bool | None = None,
    processes: bool = False,
) -> float:
    """Events/s of raw MiniLM over the same texts, in batches of ``batch`` events.

    ``workers`` > 1 shards each call over that many one-core threads (the
    worker's layout); 1 is one call with torch's thread team. ``graph`` is the
    forward pass (TorchScript or eager); ``pin`` pins the shards as the worker does;
    ``processes`` runs the shards in child processes.
    """
    from prototypes.embedder import context_text, load_embedder

    emb = load_embedder(
        "minilm",
        batch_size=embed_batch,
        dtype=dtype,
        workers=workers,
        graph=graph,
        pin=pin,
        processes=processes,
    )
    emb.embed(["warm up"] * (embed_batch + 1))
    t0 = time.perf_counter()
    for i in range(0, len(events), batch):
        texts: list[str] = []
        for ev in events[i : i + batch]:
            texts += [context_text(ev.context), ev.chosen, ev.rejected]
        emb.embed(texts)
    return len(events) / (time.perf_counter() - t0)


DRIFT_WARN = 0.1
"""Relative gap between the raw embedding measured before and after the path that
gets the run flagged (shared 2-core machines change speed by that much)."""


def raw_embed_layouts(
    events: list[FeedbackEvent], batch: int, env: dict[str, str], torch_threads: int
) -> tuple[dict[str, float], dict[str, Any]]:
    """Events/s of every way to embed on this machine with the worker's settings.

    One call on torch's thread team, shards on one-core threads (traced or eager), or
    traced shards in child processes: the limit is the fastest, whichever layout the
    worker uses.
    """
    import torch

    from prototypes.embedder import default_batch_size, default_workers
    from stream.config import StreamConfig

    torch.set_num_threads(torch_threads)
    dtype = ModelSettings.model_validate(
        {"embedder_dtype": env.get("PGENRM_MODELS__EMBEDDER_DTYPE", "auto")}
    ).embedder_dtype
    configured = env.get("PGENRM_STREAM_EMBED_BATCH") or StreamConfig().embed_batch
    embed_batch = int(configured) if configured else default_batch_size(dtype)
    configured_workers = env.get("PGENRM_MODELS__EMBEDDER_WORKERS")
    workers = default_workers(int(configured_workers) if configured_workers else None)
    pin = ModelSettings.model_validate(
        {"embedder_pin_shards": env.get("PGENRM_MODELS__EMBEDDER_PIN_SHARDS")}
    ).embedder_pin_shards
    layouts: dict[str, float] = {}
    shards = max(workers, default_workers(None))
    for graph in ("traced", "eager"):
        layouts[f"{graph}_team"] = raw_embed_rate(events, batch, embed_batch, dtype, 1, graph)
        if shards > 1:
            layouts[f"{graph}_{shards}_shards"] = raw_embed_rate(
                events, batch, embed_batch, dtype, shards, graph, pin
            )
    if shards > 1:
        layouts[f"traced_{shards}_processes"] = raw_embed_rate(
            events, batch, embed_batch, dtype, shards, "traced", pin, processes=True
        )
    meta = {
        "torch_threads": torch_threads,
        "embed_batch": embed_batch,
        "embedder_workers": workers,
        "embedder_pin_shards": pin,
        "worker_embedder_graph": env.get("PGENRM_MODELS__EMBEDDER_GRAPH", "traced"),
        "embedder_dtype_setting": dtype,
    }
    return layouts, meta


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=6000)
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument("--rate", type=float, default=100.0, help="events/s of the latency phase")
    ap.add_argument(
        "--sustainable-fraction",
        type=float,
        default=0.7,
        help="when --rate is above this share of the measured full-path rate, a second "
        "latency phase runs at that share (0 turns it off)",
    )
    ap.add_argument("--requests", type=int, default=12)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--skip-rewards", action="store_true")
    ap.add_argument("--torch-threads", type=int, default=1, help="same in worker and limit")
    ap.add_argument("--out", type=Path, default=REPO / "out")
    ap.add_argument("--json", default="bench_stream.json", help="file name under --out")
    ap.add_argument(
        "--client-fetch-wait-ms",
        type=int,
        default=CLIENT_FETCH_WAIT_MS,
        help="fetch_max_wait_ms of the bench's own consumers",
    )
    ap.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra worker environment, e.g. PGENRM_STREAM_FEEDBACK_BATCH=128",
    )
    args = ap.parse_args()

    from infra.broker import EmbeddedBroker, free_port
    from infra.kafka import ensure_topics, make_producer, produce
    from infra.topics import FEEDBACK
    from stream.demo import worker_process

    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="pgenrm-bench-"))
    results: dict[str, Any] = {
        "client_fetch_wait_ms": args.client_fetch_wait_ms,
        "throughput_observer_fetch_wait_ms": THROUGHPUT_FETCH_WAIT_MS,
        "events": args.events,
        "users": args.users,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "loadavg_1m_start": os.getloadavg()[0],
        "cpu": cpu_description(),
    }
    batch = 256
    env = {
        "PGENRM_STREAM_TORCH_THREADS": str(args.torch_threads),
        "PGENRM_STREAM_PERSONA_REFRESH": "false",
        "PGENRM_STREAM_API": "false",
        "PGENRM_STREAM_FEEDBACK_BATCH": str(batch),
        "PGENRM_MODELS__SAMPLES": "1",
        "PGENRM_MODELS__NEIGHBOURS": "1",
        "PGENRM_MODELS__MAX_NEW_TOKENS": str(args.max_new_tokens),
        "PGENRM_STREAM_TRACE": "true",
    }
    for kv in args.worker_env:
        key, _, value = kv.partition("=")
        env[key] = value
    results["worker_env"] = {k: v for k, v in env.items() if k.startswith("PGENRM_")}
    events = make_events(args.events, args.users)
    before, _ = raw_embed_layouts(events, batch, env, args.torch_threads)
    with EmbeddedBroker(port=free_port(), data_dir=root / "broker") as broker:
        s = Settings(
            data_dir=root / "data",
            models_dir=REPO / "models",
            broker=BrokerSettings(urls=broker.bootstrap, embedded=False),
            models=ModelSettings(samples=1, neighbours=1, max_new_tokens=args.max_new_tokens),
        )
        ensure_topics(s)
        phases: dict[str, tuple[float, float]] = {}
        if args.skip_rewards:
            env["PGENRM_STREAM_LOAD_BACKEND"] = "false"
        prod = make_producer(s, linger_ms=20, batch_size=256 * 1024)
        lat_prod = make_producer(s, linger_ms=0)  # each event leaves when it is sent
        watcher = Watcher(s, THROUGHPUT_FETCH_WAIT_MS)
        with worker_process(s, env, root / "worker.log", f"bench-{uuid.uuid4().hex[:8]}") as proc:
            # warm-up: the worker joins, loads the embedder (and the model), applies one event
            warm = make_events(1, 1, prefix="warm")
            produce(prod, FEEDBACK, warm[0]).get(30)
            console.print("waiting for the worker (model loading)...")
            watcher.wait_applied({"warm-user-0": 1}, 600)
            # 1. throughput: the backlog is produced while the worker is stopped, so the
            # load generator's CPU is outside the window (the raw consume, too, reads a
            # filled topic); a stop of ~1 s is far inside the group's session timeout
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                p0 = time.perf_counter()
                for ev in events:
                    produce(prod, FEEDBACK, ev)
                prod.flush()
                results["backlog_produce_s"] = time.perf_counter() - p0
            finally:
                os.kill(proc.pid, signal.SIGCONT)
            w0 = time.time()
            pids = {"worker": proc.pid, "broker": broker.pid, "bench": os.getpid()}
            cpu0 = read_cpu(pids)
            t0 = time.perf_counter()
            expected: dict[str, int] = {}
            for ev in events:
                expected[ev.user_id] = expected.get(ev.user_id, 0) + 1
            t_done = watcher.wait_applied(expected, 900)
            full_rate = len(events) / (t_done - t0)
            phases["throughput"] = (w0, time.time())
            results["throughput_cpu_cores"] = cores_used(cpu0, read_cpu(pids), t_done - t0)
            results["memory_after_throughput"] = worker_memory(proc.pid)
            console.print(f"full feedback path: {full_rate:,.0f} events/s")
            watcher.close()  # the latency phase needs a responsive observer
            watcher = Watcher(s, args.client_fetch_wait_ms)
            # 2. first-feedback-to-prototype-visible at a steady rate (100 events/s)
            rate = args.rate
            lat_events = make_events(int(args.latency_seconds * rate), 10_000, seed=1, prefix="lat")
            w0 = time.time()
            visible, results["latency_cpu_cores"] = latency_phase(
                watcher, lat_prod, lat_events, rate, pids
            )
            phases["latency"] = (w0, time.time())
            results["latency_rate_eps"] = rate
            results["latency_offered_to_capacity"] = rate / full_rate
            results["prototype_visible_ms"] = visible
            # 2b. the same at a rate this machine carries: what the path adds when the
            # queue stays short, next to the fixed rate that may be above its capacity
            sustainable = args.sustainable_fraction * full_rate
            if 0 < sustainable < rate:
                sus_events = make_events(
                    int(args.latency_seconds * sustainable), 10_000, seed=2, prefix="lat2"
                )
                w0 = time.time()
                visible, results["sustainable_cpu_cores"] = latency_phase(
                    watcher, lat_prod, sus_events, sustainable, pids
                )
                phases["latency_sustainable"] = (w0, time.time())
                results["sustainable_rate_eps"] = sustainable
                results["prototype_visible_sustainable_ms"] = visible
            # 3. rewards
            if not args.skip_rewards:
                w0 = time.time()
                results["rewards"] = bench_rewards(
                    s, events, args.requests, args.client_fetch_wait_ms
                )
                phases["rewards"] = (w0, time.time())
            if proc.poll() is not None:
                raise RuntimeError((root / "worker.log").read_text()[-3000:])
        results["trace"], results["trace_unparsed_lines"] = summarise_trace(
            root / "worker.log", phases
        )
        watcher.close()
        prod.close()
        lat_prod.close()
        results["raw_consume_eps"] = raw_consume_rate(s, FEEDBACK, args.events)
    after, meta = raw_embed_layouts(events, batch, env, args.torch_threads)
    results.update(meta)
    # the limit is the faster of the two measurements: a machine that slowed down (or sped
    # up) while the path ran cannot flatter the ratio; a drift between them is reported
    results["raw_embed_eps_by_layout_before"] = before
    results["raw_embed_eps_by_layout"] = after
    results["raw_embed_eps_before"] = max(before.values())
    results["raw_embed_eps_after"] = max(after.values())
    results["raw_embed_eps"] = max(results["raw_embed_eps_before"], results["raw_embed_eps_after"])
    results["raw_embed_drift"] = (
        abs(results["raw_embed_eps_before"] - results["raw_embed_eps_after"])
        / results["raw_embed_eps"]
    )
    from prototypes.embedder import load_embedder

    results["embedder_dtype"] = load_embedder(
        "minilm", batch_size=meta["embed_batch"], dtype=meta["embedder_dtype_setting"]
    ).dtype
    results["full_path_eps"] = full_rate
    tight = min(results["raw_consume_eps"], results["raw_embed_eps"])
    results["ratio_to_tighter_limit"] = full_rate / tight
    results["loadavg_1m_end"] = os.getloadavg()[0]
    report(results, args.out, args.json)


def latency_phase(
    watcher: Watcher,
    producer: Any,
    events: list[FeedbackEvent],
    rate: float,
    pids: dict[str, int | None],
) -> tuple[dict[str, float], dict[str, Any]]:
    """Produce ``events`` (each a new user's first) at ``rate``/s; time each to prototype visible.

    Returns the latency percentiles in ms and the cores each process used meanwhile.
    """
    from infra.kafka import produce
    from infra.topics import FEEDBACK

    first_sent: dict[str, float] = {}
    cpu0 = read_cpu(pids)
    t_start = time.perf_counter()
    # one sleep to each send time and no flush per event: the generator spinning on
    # 0.5 ms sleeps and waiting for each ack took 0.27 cores of the 2 (and the
    # broker 0.2) from the path it measures; the clock starts before the send
    for i, ev in enumerate(events):
        delay = t_start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        first_sent.setdefault(ev.user_id, time.perf_counter())
        produce(producer, FEEDBACK, ev)
    producer.flush()
    t_seen = watcher.wait_applied({u: 1 for u in first_sent}, 300)
    cores = cores_used(cpu0, read_cpu(pids), t_seen - t_start)
    lat_ms = [
        (watcher.first_proto[u] - t) * 1000
        for u, t in first_sent.items()
        if u in watcher.first_proto
    ]
    visible = {
        "p50": pct(lat_ms, 0.5),
        "p95": pct(lat_ms, 0.95),
        "n": len(lat_ms),
        "missing": len(first_sent) - len(lat_ms),
    }
    return visible, cores


def summarise_trace(
    log_path: Path, phases: dict[str, tuple[float, float]]
) -> tuple[dict[str, Any], int]:
    """Per phase: p50/p95/mean of every traced stage (``pgenrm trace`` lines of the worker).

    Also returns how many trace lines were not JSON (torn lines): counted, not dropped.
    """
    recs: list[dict[str, Any]] = []
    unparsed = 0
    for line in log_path.read_text(errors="replace").splitlines():
        at = line.find("pgenrm trace ")
        if at >= 0:
            try:
                recs.append(json.loads(line[at + len("pgenrm trace ") :]))
            except json.JSONDecodeError:
                unparsed += 1
    out: dict[str, Any] = {}
    for name, (start, end) in phases.items():
        sel = [r for r in recs if start <= r["t"] <= end + 1.0]
        for path in sorted({r["path"] for r in sel}):
            rows = [r for r in sel if r["path"] == path]
            keys = sorted({k for r in rows for k, v in r.items() if isinstance(v, int | float)})
            stats: dict[str, Any] = {"records": len(rows)}
            for k in keys:
                if k == "t":
                    continue
                vals = [float(r[k]) for r in rows if isinstance(r.get(k), int | float)]
                stats[k] = {
                    "p50": pct(vals, 0.5),
                    "p95": pct(vals, 0.95),
                    "mean": statistics.fmean(vals),
                    "max": max(vals),
                    "sum": math.fsum(vals),
                }
            out[f"{name}/{path}"] = stats
    return out, unparsed


def bench_rewards(
    s: Settings, events: list[FeedbackEvent], n: int, fetch_wait_ms: int = CLIENT_FETCH_WAIT_MS
) -> dict[str, Any]:
    """Known vs cold-start requests through the worker, with one persistent client.

    ``e2e`` runs from just before the request is produced to the moment its result
    is consumed; ``overhead`` = e2e - generation time reported by the worker
    (``model_ms`` note); ``overhead_beyond_models`` also takes off the query and
    candidate embedding the request waited for (``embed_ms`` note: MiniLM is a model
    too; what embeds beside generation is not waited for);
    ``worker_overhead`` = the worker's own latency_ms - model_ms (no transport);
    ``produce`` = producing the request until acked; ``deliver`` = from the
    result's Kafka timestamp (set when the worker sent it) to its consumption.
    """
    from kafka import TopicPartition

    from infra.kafka import make_consumer, make_producer, produce, seek_to_highwater
    from infra.topics import REWARD_REQUESTS, REWARDS

    cons = make_consumer(s, group_id=None, fetch_max_wait_ms=fetch_wait_ms)
    cons.assign([TopicPartition(REWARDS, p) for p in sorted(cons.partitions_for_topic(REWARDS))])
    seek_to_highwater(cons)
    prod = make_producer(s, linger_ms=0)
    known = sorted({e.user_id for e in events})[:n]
    keys = [
        "e2e",
        "model",
        "embed",
        "overhead",
        "overhead_beyond_models",
        "worker_overhead",
        "produce",
        "deliver",
    ]
    out: dict[str, list[float]] = {f"{k}_{m}": [] for k in ("known", "cold") for m in keys}
    modes: list[str] = []
    for i in range(2 * n + 1):
        cold = i % 2 == 1
        user = f"stranger-{i}" if cold else known[(i // 2) % len(known)]
        req = RewardRequest(
            request_id=f"bench-{i}-{uuid.uuid4().hex[:6]}",
            user_id=user,
            context=[
                ChatMessage(role="user", content=f"{ASKS[i % len(ASKS)]} {SUBJECTS[i % 14]}?")
            ],
            candidates=[STYLES["short"].format(s="it"), STYLES["long"].format(s="it")],
            overrides=RewardOverrides(samples=1, neighbours=1),
        )
        t0 = time.perf_counter()
        produce(prod, REWARD_REQUESTS, req)
        prod.flush()
        produce_ms = (time.perf_counter() - t0) * 1000
        res: RewardResult | None = None
        deliver_ms = float("nan")
        while res is None and time.perf_counter() - t0 < 600:
            # poll returns as soon as a fetch brings records; the timeout only bounds idling
            for recs in cons.poll(timeout_ms=100).values():
                for r in recs:
                    got = RewardResult.model_validate_json(r.value)
                    if got.request_id == req.request_id:
                        res = got
                        deliver_ms = time.time() * 1000 - r.timestamp
        if res is None:
            raise TimeoutError(req.request_id)
        e2e = (time.perf_counter() - t0) * 1000
        if i == 0:
            continue  # warm-up
        model_ms = _note_ms(res, "model_ms")
        embed_ms = _note_ms(res, "embed_ms")
        k = "cold" if cold else "known"
        modes.append(res.mode)
        out[f"{k}_e2e"].append(e2e)
        out[f"{k}_model"].append(model_ms)
        out[f"{k}_embed"].append(embed_ms)
        out[f"{k}_overhead"].append(e2e - model_ms)
        out[f"{k}_overhead_beyond_models"].append(e2e - model_ms - embed_ms)
        out[f"{k}_worker_overhead"].append(res.latency_ms - model_ms)
        out[f"{k}_produce"].append(produce_ms)
        out[f"{k}_deliver"].append(deliver_ms)
    cons.close()
    prod.close()
    summary: dict[str, Any] = {"modes": {m: modes.count(m) for m in set(modes)}}
    for k, v in out.items():
        summary[k] = {
            "p50": pct(v, 0.5),
            "p95": pct(v, 0.95),
            "mean": statistics.fmean(v) if v else None,
        }
    for name, key in (
        ("overhead_ms", "overhead"),
        ("overhead_beyond_models_ms", "overhead_beyond_models"),
        ("worker_overhead_ms", "worker_overhead"),
        ("embed_ms", "embed"),
    ):
        both = out[f"known_{key}"] + out[f"cold_{key}"]
        summary[name] = {"p50": pct(both, 0.5), "p95": pct(both, 0.95)}
    return summary


def _note_ms(res: RewardResult, name: str) -> float:
    """A ``name=<ms>`` note of the result's explanation (0.0 when absent)."""
    for note in res.explanation.notes:
        if note.startswith(f"{name}="):
            return float(note.split("=", 1)[1])
    return 0.0


def report(r: dict[str, Any], out: Path, name: str = "bench_stream.json") -> None:
    t = Table(title="pgenrm stream benchmark (tansu, 2 CPU cores)")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_column("goal")
    t.add_row("raw kafka-python consume", f"{r['raw_consume_eps']:,.0f} ev/s", "limit")
    layouts = r.get("raw_embed_eps_by_layout", {})
    shown = ", ".join(f"{k} {v:,.0f}" for k, v in layouts.items())
    if "raw_embed_eps_before" in r:
        shown = (
            f"best before the path {r['raw_embed_eps_before']:,.0f}, "
            f"after {r['raw_embed_eps_after']:,.0f}; after by layout: {shown}"
        )
    t.add_row(
        "raw batched embedding (3 texts/event), best layout",
        f"{r['raw_embed_eps']:,.0f} ev/s" + (f" ({shown})" if shown else ""),
        "limit",
    )
    t.add_row("full feedback path", f"{r['full_path_eps']:,.0f} ev/s", "")
    if r.get("raw_embed_drift", 0.0) > DRIFT_WARN:
        console.print(
            f"[yellow]raw embedding before and after the path differ by "
            f"{100 * r['raw_embed_drift']:.0f} %: the machine's speed changed during the run, "
            "so its ratio is less certain[/yellow]"
        )
    t.add_row("ratio to tighter limit", f"{r['ratio_to_tighter_limit']:.2f}", ">= 0.8")
    pv = r["prototype_visible_ms"]
    t.add_row(
        f"first feedback -> prototype visible p50/p95 at {r.get('latency_rate_eps', 100):.0f} ev/s",
        f"{pv['p50']:.0f} / {pv['p95']:.0f} ms (n={pv['n']})",
        "p95 <= 2000 ms at 100 ev/s",
    )
    if "latency_offered_to_capacity" in r:
        t.add_row(
            "  offered rate / full-path rate of this run",
            f"{r['latency_offered_to_capacity']:.2f}",
            "1 or more: the queue grows",
        )
    if "prototype_visible_sustainable_ms" in r:
        sv = r["prototype_visible_sustainable_ms"]
        t.add_row(
            f"  same at {r['sustainable_rate_eps']:.0f} ev/s "
            f"({r['sustainable_rate_eps'] / r['full_path_eps']:.0%} of the full-path rate)",
            f"{sv['p50']:.0f} / {sv['p95']:.0f} ms (n={sv['n']})",
            "",
        )
    if "rewards" in r:
        rw = r["rewards"]
        t.add_row(
            "reward overhead beyond model p50/p95",
            f"{rw['overhead_ms']['p50']:.0f} / {rw['overhead_ms']['p95']:.0f} ms",
            "p95 <= 50 ms",
        )
        t.add_row(
            "  beyond generation and embedding p50/p95",
            f"{rw['overhead_beyond_models_ms']['p50']:.0f} / "
            f"{rw['overhead_beyond_models_ms']['p95']:.0f} ms",
            "",
        )
        t.add_row(
            "  of which inside the worker p50/p95",
            f"{rw['worker_overhead_ms']['p50']:.0f} / {rw['worker_overhead_ms']['p95']:.0f} ms",
            "",
        )
        t.add_row(
            "known user e2e p50 (model p50)",
            f"{rw['known_e2e']['p50']:.0f} ms ({rw['known_model']['p50']:.0f})",
            "",
        )
        t.add_row(
            "cold-start e2e p50 (model p50)",
            f"{rw['cold_e2e']['p50']:.0f} ms ({rw['cold_model']['p50']:.0f})",
            "",
        )
    console.print(t)
    for phase in ("throughput", "latency", "latency_sustainable"):
        gcs = [
            f"generation {g}: {st['n']['sum']:.0f}, {st['total_ms']['sum']:.0f} ms "
            f"(longest {st['max_ms']['max']:.0f} ms)"
            for g in range(3)
            if (st := r.get("trace", {}).get(f"{phase}/gc{g}"))
        ]
        if gcs:
            console.print(
                f"[dim]garbage collections during the {phase} phase: {'; '.join(gcs)}[/dim]"
            )
    for phase in ("throughput", "latency", "sustainable"):
        if f"{phase}_cpu_cores" in r:
            used = ", ".join(
                f"{k} {v:.2f}" for k, v in r[f"{phase}_cpu_cores"].items() if isinstance(v, float)
            )
            console.print(f"[dim]cores busy during the {phase} phase: {used}[/dim]")
    if mem := r.get("memory_after_throughput"):
        shown = ", ".join(f"{k.removesuffix('_pss_mb')} {v:,.0f} MB" for k, v in mem.items() if v)
        console.print(f"[dim]memory (PSS) after the throughput phase: {shown}[/dim]")
    if r.get("trace_unparsed_lines"):
        console.print(
            f"[yellow]{r['trace_unparsed_lines']} worker trace lines could not be parsed[/yellow]"
        )
    for phase, stats in r.get("trace", {}).items():
        parts = [
            f"{k} {v['p50']:.0f}/{v['p95']:.0f}"
            for k, v in stats.items()
            if isinstance(v, dict) and v["p95"] >= 1.0
        ]
        console.print(f"[dim]{phase} (p50/p95 ms; n = events per batch): {', '.join(parts)}[/dim]")
    (out / name).write_text(json.dumps(r, indent=2))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax, lx) = plt.subplots(1, 2, figsize=(10, 3.8))
        names = ["raw consume", "raw embed", "full path"]
        vals = [r["raw_consume_eps"], r["raw_embed_eps"], r["full_path_eps"]]
        bars = ax.bar(names, vals, color=["#999", "#999", "#2a7"])
        ax.bar_label(bars, labels=[f"{v:,.0f}" for v in vals])
        ax.set_yscale("log")  # the broker limit is ~50x the others
        ax.set_ylabel("feedback events / s (log)")
        ax.set_title(f"throughput; ratio to tighter limit {r['ratio_to_tighter_limit']:.2f}")
        lat: dict[str, float] = {}
        for key, rate_key in (
            ("prototype_visible_ms", "latency_rate_eps"),
            ("prototype_visible_sustainable_ms", "sustainable_rate_eps"),
        ):
            if key in r:
                for q in ("p50", "p95"):
                    lat[f"{q} @ {r[rate_key]:.0f}/s"] = r[key][q]
        lbars = lx.bar(list(lat), [v / 1000 for v in lat.values()], color="#27a")
        lx.bar_label(lbars, labels=[f"{v / 1000:.2f} s" for v in lat.values()])
        lx.axhline(2.0, color="#c33", linestyle="--", label="goal p95 <= 2 s")
        finite = [v / 1000 for v in lat.values() if math.isfinite(v)]
        lx.set_ylim(0, 1.2 * max([2.0, *finite]))  # room for the labels and the legend
        lx.set_ylabel("seconds")
        lx.set_title("first feedback -> prototype visible (events/s offered)")
        lx.legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(out / "bench_stream.png", dpi=120)
    except Exception as exc:  # plotting is a convenience
        console.print(f"[yellow]plot skipped: {exc}[/yellow]")
    console.print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
