"""``pgenrm demo``: a scripted scenario on a private broker and worker.

The scenario is written here (no dataset): eight background users teach the
system two styles (concise vs thorough answers); then a new user, Alice, asks
for a reward (``cold_start``: routed to a prototype by her query), gives three
feedback events with critiques (she wants short, practical answers), and asks
the same question again (``personal``: her history, prototype and persona).
The demo prints both rewards side by side and what changed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from infra.contracts import ChatMessage, FeedbackEvent, PersonaState, RewardRequest, RewardResult
from infra.settings import BrokerSettings, Settings

CONCISE = "concise"
THOROUGH = "thorough"

# (query, short answer, long answer)
TOPICS: list[tuple[str, str, str]] = [
    (
        "How do I keep basil alive indoors?",
        "Sunny window, water when the top soil is dry, pinch off flowers.",
        "Basil is a warm-weather herb native to tropical regions, so indoors it needs at least "
        "six hours of direct light; a south-facing window works, or a grow light for twelve "
        "hours. Use a pot with drainage holes and a light potting mix, water deeply once the "
        "top two centimetres are dry, feed every four weeks, and pinch off flower buds so the "
        "plant keeps producing leaves rather than seeds.",
    ),
    (
        "What is a good way to start running?",
        "Walk-run intervals three times a week; add a minute of running each week.",
        "Start with a walk-run programme: warm up with five minutes of brisk walking, then "
        "alternate one minute of easy running with two minutes of walking for twenty minutes, "
        "three days a week with rest days in between. Each week, lengthen the running "
        "intervals slightly. Get fitted for shoes, keep the pace conversational, and track "
        "how your legs feel so you can back off before small aches become injuries.",
    ),
    (
        "How can I save money on groceries?",
        "Plan meals, shop with a list, buy store brands.",
        "Begin by planning a week of meals around what is already in your pantry and what is "
        "on sale, then write a list organised by aisle and stick to it. Compare unit prices, "
        "choose store brands, buy staples like rice and beans in bulk, freeze leftovers in "
        "portions, and avoid shopping hungry. Over a month these habits typically cut the bill "
        "by a fifth or more, and tracking receipts shows which changes matter most.",
    ),
    (
        "How do I make my code easier to read?",
        "Short functions, clear names, delete dead code.",
        "Readable code comes from several habits working together: give variables and "
        "functions names that say what they mean, keep each function focused on one task, "
        "prefer early returns to deep nesting, remove commented-out and unused code, add "
        "docstrings where intent is not obvious, and let an automatic formatter settle style "
        "debates. Code review and consistent project conventions reinforce all of this.",
    ),
]

ALICE_QUERY = "How should I prepare for a job interview tomorrow?"
ALICE_CANDIDATES = [
    "Preparing for an interview is a multi-step process. First, research the company in "
    "depth: its history, products, culture and recent news. Second, study the job "
    "description and map each requirement to an example from your experience using the STAR "
    "method. Third, rehearse common questions aloud, ideally with a friend. Fourth, prepare "
    "thoughtful questions for the interviewers. Finally, plan your outfit, route and timing "
    "the night before and get a full night of sleep.",
    "Re-read the job ad, prepare three stories that show your skills, pick your questions for "
    "them, and sleep early.",
]
ALICE_FEEDBACK: list[tuple[str, str, str, str]] = [
    # (query, chosen, rejected, critique)
    (
        "What should I pack for a weekend hike?",
        "Water, snacks, rain jacket, map, first-aid kit.",
        "Packing for a weekend hike requires careful thought about weather, terrain and "
        "duration; start with the ten essentials, then consider layers for changing "
        "temperatures, enough food for each day plus extra, and a way to purify water.",
        "Just give me the list, I don't need the essay.",
    ),
    (
        "How do I fix a slow laptop?",
        "Uninstall unused apps, disable startup programs, restart.",
        "A slow laptop can have many causes, from too many background processes to a nearly "
        "full disk or outdated drivers; a systematic approach starts with the task manager, "
        "then storage cleanup, then updates, then a look at the hardware.",
        "Too long. Short, practical steps are what I want.",
    ),
    (
        "Any tips for sleeping better?",
        "Same bedtime daily, no screens an hour before, cool dark room.",
        "Sleep quality depends on circadian rhythm, sleep hygiene and stress; experts suggest "
        "a consistent schedule, a wind-down routine, limiting caffeine after noon, and keeping "
        "the bedroom cool, dark and quiet, while also considering exercise timing.",
        "Short and to the point, please.",
    ),
]


def scenario_events() -> tuple[list[FeedbackEvent], list[FeedbackEvent]]:
    """Background users' events and Alice's events (deterministic ids).

    >>> bg, alice = scenario_events()
    >>> len(bg), len(alice), alice[0].critique is not None
    (16, 3, True)
    """
    background: list[FeedbackEvent] = []
    for u in range(8):
        style = CONCISE if u % 2 == 0 else THOROUGH
        user = f"demo-{style}-{u}"
        for k in range(2):
            q, short, long = TOPICS[(u + k) % len(TOPICS)]
            chosen, rejected = (short, long) if style == CONCISE else (long, short)
            background.append(
                FeedbackEvent(
                    event_id=f"{user}-{k}",
                    user_id=user,
                    context=[ChatMessage(role="user", content=q)],
                    chosen=chosen,
                    rejected=rejected,
                    critique=("Shorter is better." if style == CONCISE else "Explain it properly."),
                )
            )
    alice = [
        FeedbackEvent(
            event_id=f"alice-{k}",
            user_id="alice",
            context=[ChatMessage(role="user", content=q)],
            chosen=chosen,
            rejected=rejected,
            critique=critique,
            stated_preferences="I am busy; I like short, practical answers." if k == 0 else None,
        )
        for k, (q, chosen, rejected, critique) in enumerate(ALICE_FEEDBACK)
    ]
    return background, alice


def alice_request(n: int) -> RewardRequest:
    return RewardRequest(
        request_id=f"alice-req-{n}-{uuid.uuid4().hex[:8]}",
        user_id="alice",
        context=[ChatMessage(role="user", content=ALICE_QUERY)],
        candidates=list(ALICE_CANDIDATES),
    )


class PersonaWatcher:
    """Follows ``pgenrm.personas.v1`` from the beginning; latest state per user."""

    def __init__(self, settings: Settings) -> None:
        from kafka import TopicPartition

        from infra.kafka import make_consumer
        from infra.topics import PERSONAS

        self.latest: dict[str, PersonaState] = {}
        self._consumer = make_consumer(settings, group_id=None)
        parts = self._consumer.partitions_for_topic(PERSONAS) or set()
        self._consumer.assign([TopicPartition(PERSONAS, p) for p in sorted(parts)])
        self._consumer.seek_to_beginning()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for recs in self._consumer.poll(timeout_ms=200).values():
                for r in recs:
                    try:
                        st = PersonaState.model_validate_json(r.value)
                    except Exception:
                        continue
                    with self._lock:
                        old = self.latest.get(st.user_id)
                        if old is None or st.version >= old.version:
                            self.latest[st.user_id] = st

    def get(self, user_id: str) -> PersonaState | None:
        with self._lock:
            return self.latest.get(user_id)

    def wait(self, pred: Any, timeout_s: float, what: str) -> None:
        end = time.monotonic() + timeout_s
        while not pred(self):
            if time.monotonic() > end:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(0.2)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(Exception):
            self._consumer.close()


@contextlib.contextmanager
def worker_process(
    settings: Settings, env_extra: dict[str, str], log_path: Path, app_id: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``pgenrm up`` as a child process on ``settings``' broker; SIGTERM on exit.

    The log is appended to, so a restarted worker (tests kill and restart it) keeps one log.
    """
    env = {
        **os.environ,
        "PGENRM_DATA_DIR": str(settings.data_dir),
        "PGENRM_MODELS_DIR": str(settings.models_dir),
        "PGENRM_BROKER__URLS": settings.broker.urls,
        "PGENRM_BROKER__EMBEDDED": "false",
        **env_extra,
    }
    with log_path.open("ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "infra.cli", "up", "--app-id", app_id, "--loglevel", "info"],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def run_demo(
    settings: Settings,
    *,
    max_new_tokens: int = 160,
    samples: int = 1,
    neighbours: int = 1,
    timeout_s: float = 600.0,
    keep: bool = False,
    console: Console | None = None,
) -> tuple[RewardResult, RewardResult]:
    """Run the scenario; returns (cold-start result, personal result)."""
    from infra.broker import EmbeddedBroker, free_port
    from infra.clients import request_reward
    from infra.kafka import ensure_topics, make_producer, produce
    from infra.topics import FEEDBACK

    con = console or Console()
    root = Path(tempfile.mkdtemp(prefix="pgenrm-demo-"))
    t_start = time.monotonic()
    try:
        with EmbeddedBroker(port=free_port(), data_dir=root / "broker") as broker:
            s = settings.model_copy(
                update={
                    "data_dir": root / "data",
                    "broker": BrokerSettings(urls=broker.bootstrap, embedded=False),
                }
            )
            ensure_topics(s)
            api_port = free_port()
            env = {
                "PGENRM_MODELS__SAMPLES": str(samples),
                "PGENRM_MODELS__NEIGHBOURS": str(neighbours),
                "PGENRM_MODELS__MAX_NEW_TOKENS": str(max_new_tokens),
                "PGENRM_STREAM_PERSONA_DEBOUNCE_S": "0.5",
                "PGENRM_STREAM_PERSONA_MAX_NEW_TOKENS": str(max_new_tokens),
                "PGENRM_API__HOST": "127.0.0.1",
                "PGENRM_API_PORT": str(api_port),
            }
            con.print(
                f"[bold]pgenrm demo[/bold]: broker {broker.bootstrap}, data {root}, "
                f"dashboard http://127.0.0.1:{api_port}/dashboard"
            )
            app_id = f"pgenrm-demo-{uuid.uuid4().hex[:8]}"
            with worker_process(s, env, root / "worker.log", app_id) as proc:
                watcher = PersonaWatcher(s)
                try:
                    return _scenario(
                        s,
                        con,
                        watcher,
                        proc,
                        root,
                        timeout_s,
                        t_start,
                        produce,
                        make_producer,
                        request_reward,
                        FEEDBACK,
                    )
                finally:
                    watcher.close()
    finally:
        if keep:
            con.print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _scenario(
    s: Settings,
    con: Console,
    watcher: PersonaWatcher,
    proc: subprocess.Popen[bytes],
    root: Path,
    timeout_s: float,
    t_start: float,
    produce: Any,
    make_producer: Any,
    request_reward: Any,
    feedback_topic: str,
) -> tuple[RewardResult, RewardResult]:
    background, alice = scenario_events()

    def left() -> float:
        if proc.poll() is not None:
            tail = (root / "worker.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"worker exited with {proc.returncode}:\n{tail}")
        return max(timeout_s - (time.monotonic() - t_start), 1.0)

    prod = make_producer(s)
    try:
        with con.status("background users give feedback (the worker loads its models)..."):
            for ev in background:
                produce(prod, feedback_topic, ev)
            prod.flush()
            users = {e.user_id for e in background}
            watcher.wait(
                lambda w: all(
                    (st := w.get(u)) is not None and st.events_applied >= 2 for u in users
                ),
                left(),
                "background feedback",
            )
        con.print(f"{len(background)} background events applied for {len(users)} users")
        with con.status("Alice (new user) asks for a reward: cold start..."):
            first = request_reward(s, alice_request(1), timeout_s=left())
        with con.status("Alice gives three feedback events with critiques..."):
            for ev in alice:
                produce(prod, feedback_topic, ev)
            prod.flush()
            watcher.wait(
                lambda w: (
                    (st := w.get("alice")) is not None
                    and st.events_applied >= 3
                    and st.prototype_id is not None
                ),
                left(),
                "Alice's feedback",
            )
        with con.status("waiting for Alice's persona (generated in the background)..."):
            try:
                watcher.wait(
                    lambda w: (
                        (st := w.get("alice")) is not None
                        and st.persona is not None
                        and st.version >= 3
                    ),
                    min(left(), 300.0),
                    "Alice's persona",
                )
            except TimeoutError:
                con.print("[yellow]persona not ready in time; asking without it[/yellow]")
        with con.status("Alice asks again: personal reward..."):
            second = request_reward(s, alice_request(2), timeout_s=left())
    finally:
        prod.close(timeout=5)
    show(con, first, second, watcher.get("alice"))
    con.print(f"demo took {time.monotonic() - t_start:.0f} s")
    return first, second


def _fmt(xs: list[float] | None) -> str:
    return "-" if not xs else ", ".join(f"{x:.3g}" for x in xs)


def show(
    con: Console, first: RewardResult, second: RewardResult, state: PersonaState | None
) -> None:
    """Print the two rewards side by side and what changed."""
    t = Table(title=f"Alice: '{ALICE_QUERY}'  (candidate 0 = thorough, 1 = short)")
    t.add_column("")
    t.add_column("first request")
    t.add_column("second request")

    def scores(r: RewardResult) -> str:
        return _fmt([c.score for c in sorted(r.scores, key=lambda c: c.index)])

    def best(r: RewardResult) -> str:
        return str(min(r.scores, key=lambda c: c.rank).index)

    rows = [
        ("mode", first.mode, second.mode),
        ("prototype", str(first.prototype_id), str(second.prototype_id)),
        ("scores", scores(first), scores(second)),
        ("preferred candidate", best(first), best(second)),
        (
            "prior (cosine)",
            _fmt(first.components.get("prior")),
            _fmt(second.components.get("prior")),
        ),
        (
            "own chains (1-10)",
            _fmt(first.components.get("individual")),
            _fmt(second.components.get("individual")),
        ),
        (
            "neighbour chains (1-10)",
            _fmt(first.components.get("prototype")),
            _fmt(second.components.get("prototype")),
        ),
        (
            "chains m / neighbours n",
            f"{first.samples_used} / {first.neighbours_used}",
            f"{second.samples_used} / {second.neighbours_used}",
        ),
        (
            "parse failures / ties",
            f"{first.parse_failures} / {first.ties}",
            f"{second.parse_failures} / {second.ties}",
        ),
        ("latency", f"{first.latency_ms:.0f} ms", f"{second.latency_ms:.0f} ms"),
        ("notes", "; ".join(first.explanation.notes), "; ".join(second.explanation.notes)),
    ]
    for row in rows:
        t.add_row(*row)
    con.print(t)
    if state is not None:
        con.print(
            f"Alice now: {state.history_size} history triples, {state.critiques} critiques, "
            f"prototype {state.prototype_id}"
        )
        if state.persona:
            con.print(f"[bold]persona[/bold]: {state.persona[:600]}")
        if state.criteria:
            con.print(
                "criteria: " + ", ".join(f"{c.name} ({c.weight:.0f}%)" for c in state.criteria)
            )
    changed = []
    if first.mode != second.mode:
        changed.append(f"mode {first.mode} -> {second.mode}")
    if best(first) != best(second):
        changed.append(f"preferred candidate {best(first)} -> {best(second)}")
    if first.prototype_id != second.prototype_id:
        changed.append(f"prototype {first.prototype_id} -> {second.prototype_id}")
    con.print("[bold]what changed[/bold]: " + ("; ".join(changed) or "nothing"))
