"""``pgenrm bench stream|reward|store``: run one benchmark of ``bench/`` and stamp its JSON.

The benchmarks live in ``bench/bench_<name>.py`` (written with the code they
measure). Each prints the project's figure next to the raw limit measured in
the same run and the ratio, and writes JSON into ``--out``; this command adds
the machine (CPU model, cores, RAM, Python, torch, date) to every JSON file the
benchmark wrote, and writes ``machine.json``. A benchmark that does not exist
yet is reported and the command exits with status 2.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

BENCHES = ("stream", "reward", "store")
BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


def _run(path: Path, out: Path) -> int:
    """Call the file's ``main(out)`` when it has one, else run it with ``--out``."""
    spec = importlib.util.spec_from_file_location(f"pgenrm_bench_{path.stem}", path)
    if spec is None or spec.loader is None:
        return subprocess.call([sys.executable, str(path), "--out", str(out)])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    main = getattr(module, "main", None)
    if callable(main):
        params = inspect.signature(main).parameters
        if "out" in params:
            return int(main(out=out) or 0)
        if len(params) == 1 and next(iter(params)) not in ("argv", "args"):
            return int(main(out) or 0)
    return subprocess.call([sys.executable, str(path), "--out", str(out)])


def stamp(out: Path, since: float, machine: dict[str, object]) -> list[Path]:
    """Add ``machine`` to every JSON object file in ``out`` written after ``since``."""
    stamped = []
    for p in sorted(out.glob("*.json")):
        if p.stat().st_mtime < since or p.name == "machine.json":
            continue
        try:
            data = json.loads(p.read_text())
        except ValueError:
            continue
        if isinstance(data, dict):
            data.setdefault("machine", machine)
            p.write_text(json.dumps(data, indent=2, default=str) + "\n")
            stamped.append(p)
    return stamped


def bench(
    target: Annotated[str, typer.Argument(help="stream | reward | store")],
    out: Annotated[Path, typer.Option(help="Folder for the JSON results")] = Path("bench-out"),
) -> None:
    """Run a throughput/latency benchmark against the raw limit measured in the same run."""
    from rich.console import Console

    from stream.evaluation.report import machine_info

    console = Console(stderr=True)
    if target not in BENCHES:
        console.print(f"[red]unknown benchmark {target!r}[/red]; choose from {list(BENCHES)}")
        raise typer.Exit(2)
    path = BENCH_DIR / f"bench_{target}.py"
    if not path.is_file():
        console.print(f"[red]pgenrm bench {target}: {path} does not exist yet[/red]")
        raise typer.Exit(2)
    out.mkdir(parents=True, exist_ok=True)
    since = time.time() - 1.0
    machine = machine_info()
    (out / "machine.json").write_text(json.dumps(machine, indent=2) + "\n")
    rc = _run(path, out)
    stamped = stamp(out, since, machine)
    console.print(f"stamped {len(stamped)} JSON file(s) in {out} with the machine info")
    if rc:
        raise typer.Exit(rc)
