"""Signed device evidence, what it costs: signing on the device, verifying in the readers, side by side.

    python -m bench.evidence_cost device --reports 1000 --state-dir DIR      # the device's signing path, per report
    python -m bench.evidence_cost readers --devices 1000 10000 --store S     # the readers, verified vs not, one run
    python -m bench.evidence_cost edgeq [--unverified] ARGS…                 # one `edgeq` command (used by `readers`)

``device``: per report, what edge/report.py adds when a key is given — ``identity.next_seq`` (an
fsync'd file), the ``Payload``, ``evidence.encode`` with the device's Ed25519 key and
``param_key`` — timed one by one over N reports (median, p99), next to what the same report costs
on the device without signing: ``build_report`` without a key and ``Outbox.put`` (the fsync'd
queue file every report is written to before it is sent). The state dir should be on the disk a
device would use (not a tmpfs: the fsyncs are the cost).

``readers``: the stores ``bench/fleet_scale.py --direct --store S --build-only`` wrote (every device
signed and enrolled), each served by a fresh MLflow server; then `edgeq versions`, `edgeq fleet`,
`edgeq promote --from canary` and `edgeq aggregate`, each a fresh process, best of 3, the verified
path and the unverified baseline interleaved (the order alternates per round, so load drift hits
both). The baseline is the same commands on the same store through the same launcher with
verification switched off *in that process only* (``unverified()``): the enrolment register is not
read and every ``edgeq.ev.*`` value is taken as its payload says — the same searches, the same
runs, the same votes and the same output, minus the register read, the key lookups and the
Ed25519 checks. Then in-process: the register read alone, and ``evidence.read_runs`` on every
device run of the model with and without verification.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL = "edgeq-bench-fleet-scale"  # bench/fleet_scale.py's
COMMANDS = {
    "edgeq versions": ("versions", MODEL),
    "edgeq fleet": ("fleet", MODEL),
    "promote --from canary": ("promote", MODEL, "--from", "canary", "--alias", "production", "--require-devices", "3",
                              "--max-p99-ms", "all=500"),
    "edgeq aggregate": ("aggregate", MODEL),  # the timer's pass: only the runs that changed since the last one
    "edgeq aggregate --full": ("aggregate", MODEL, "--full"),  # every device run read and verified
}


# -- the baseline: verification off, in this process only --------------------------------------------------------------

def unverified() -> None:
    """Switch verification off in this process: no register read, every signed value believed as written.

    Only for the bench's baseline; registry_tools is not changed. What goes: the enrolment register's read (and so
    its parse), the key lookups and the Ed25519 checks (``edge.evidence.verify`` parses the payload as it would, but
    checks nothing). What stays: the same searches (by the write-once params, as for an enrolled fleet), the payload
    parses, the votes and the output."""
    from edge import evidence as signed
    from registry_tools import enrolment

    class Everyone(dict):
        def __contains__(self, device: object) -> bool:
            return True

    class Unchecked(enrolment.Register):
        def key_for(self, device: str, model: str) -> tuple[bytes | None, str]:
            return b"", ""

        def for_model(self, model: str) -> list:
            return [None]  # "enrolled": the readers search by params, as they do for the verified path

    enrolment.read = lambda client: Unchecked(Everyone())
    signed.verify = lambda value, key: signed.claimed(value)


def edgeq_main(argv: list[str]) -> None:
    """``edgeq ARGS`` in this process; ``--unverified`` first switches verification off."""
    if argv[:1] == ["--unverified"]:
        argv = argv[1:]
        unverified()
    from registry_tools.cli import main

    sys.argv = ["edgeq", *argv]
    main()


# -- the device: signing per report -------------------------------------------------------------------------------------

def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def device(reports: int, state_dir: Path | None) -> str:
    from bench import fleet_scale
    from edge import contract, evidence, identity
    from edge.outbox import Outbox
    from edge.registry_client import ModelVersion
    from edge.report import ReportContext, build_report, sign

    root = Path(tempfile.mkdtemp(prefix="edgeq-sign-", dir=state_dir))
    mv = ModelVersion(MODEL, "7", "r" * 32, {contract.TAG_SHA256: "ab" * 32,
                                             contract.alias_since_tag(contract.CANARY_ALIAS): "2026-12-07T12:00:00+00:00"},
                      (contract.CANARY_ALIAS,))
    loads = []
    for _ in range(50):  # the puller loads the key once per run
        start = time.perf_counter()
        key = identity.load_or_create(root)
        loads.append(time.perf_counter() - start)
    metrics, tags, params, stamp, _ = fleet_scale.device_batch(3, MODEL, mv, "r" * 32, root)
    value = next(v for k, v in params.items() if k.startswith(evidence.PARAM_PREFIX) and '"kind":"report"' in v)
    base = evidence.claimed(value)
    ctx_signed = ReportContext("sim-000003", contract.CANARY_ALIAS, None, 4, fleet_scale.RUNTIME, "r" * 32, key, root)
    ctx_plain = ReportContext("sim-000003", contract.CANARY_ALIAS, None, 4, fleet_scale.RUNTIME, "r" * 32)
    result, verdict, prov = fleet_scale.bench_inputs(3)
    outbox = Outbox(root / "outbox")
    (root / "outbox").mkdir(exist_ok=True)
    parts: dict[str, list[float]] = {k: [] for k in ("next_seq", "Payload", "encode (Ed25519 sign)", "param_key",
                                                      "signing, whole path", "build_report unsigned",
                                                      "build_report signed", "Outbox.put (fsync'd)")}
    for n in range(reports):
        t0 = time.perf_counter()
        seq = identity.next_seq(root)
        t1 = time.perf_counter()
        payload = evidence.Payload(kind=base.kind, device=base.device, model=base.model, seq=seq, at=base.at + n,
                                   version=base.version, sha256=base.sha256, alias=base.alias,
                                   alias_since=base.alias_since, verdict=base.verdict, reason=base.reason,
                                   throttled=base.throttled, figures=dict(base.figures))
        t2 = time.perf_counter()
        signed = sign(payload, key)
        t3 = time.perf_counter()
        evidence.param_key(signed)
        t4 = time.perf_counter()
        for k, v in (("next_seq", t1 - t0), ("Payload", t2 - t1), ("encode (Ed25519 sign)", t3 - t2),
                     ("param_key", t4 - t3), ("signing, whole path", t4 - t0)):
            parts[k].append(v)
        t5 = time.perf_counter()
        build_report(ctx_plain, mv, result, verdict, prov)
        t6 = time.perf_counter()
        report = build_report(ctx_signed, mv, result, verdict, prov)
        t7 = time.perf_counter()
        outbox.put(report, f"bench-{n % 4}")
        t8 = time.perf_counter()
        parts["build_report unsigned"].append(t6 - t5)
        parts["build_report signed"].append(t7 - t6)
        parts["Outbox.put (fsync'd)"].append(t8 - t7)
    lines = [f"{reports:,} reports, state dir {root.parent} ({_fs(root)}); key load (once per run): "
             f"median {1e3 * statistics.median(loads):.2f} ms",
             "", "| step | median | p99 |", "|---|---|---|"]
    for k, v in parts.items():
        lines.append(f"| {k} | {1e6 * statistics.median(v):,.0f} µs | {1e6 * _pct(v, 0.99):,.0f} µs |")
    sign_med = statistics.median(parts["signing, whole path"])
    other = statistics.median(parts["build_report unsigned"]) + statistics.median(parts["Outbox.put (fsync'd)"])
    lines.append("")
    lines.append(f"signing = {100 * sign_med / other:.0f} % of the report's other on-device work measured here "
                 f"(build_report unsigned + Outbox.put = {1e3 * other:.2f} ms median); the signed value is "
                 f"{len(value)} characters")
    shutil.rmtree(root, ignore_errors=True)
    return "\n".join(lines)


def _fs(path: Path) -> str:
    try:
        out = subprocess.run(["df", "--output=fstype", str(path)], capture_output=True, text=True, timeout=10).stdout
        return out.split()[-1]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


# -- the readers: verified vs unverified, side by side ------------------------------------------------------------------

def _command(uri: str, args: tuple[str, ...], verify: bool, outputs: dict | None = None) -> float:
    cmd = [sys.executable, "-m", "bench.evidence_cost", "edgeq", *([] if verify else ["--unverified"]),
           "--tracking-uri", uri, *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=Path(__file__).resolve().parents[1])
    took = time.perf_counter() - start
    if proc.returncode not in (0, 4):
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}")
    if outputs is not None:  # what the command said, without the clock's words ("47s ago"), to compare the two paths
        outputs[" ".join(args), verify] = (proc.returncode, re.sub(r"\d+(\.\d+)?\s*(s|m|min|h|d|days?) ago", "", proc.stdout))
    return took


def _load() -> str:
    return "load " + " / ".join(f"{x:.1f}" for x in os.getloadavg())


def readers(store_dir: Path, sizes: list[int], workers: int, rounds: int, commands: list[str] | None = None,
            in_proc: bool = True) -> str:
    from registry_tools.mlflow_server import MlflowServer

    from bench.fleet_scale import Store

    rows, notes = [], []
    for n in sizes:
        store = Store(store_dir / f"sqlite-{n}", n, None)
        if store.written() is None:
            raise SystemExit(f"{store.root}: no complete store; write it first with "
                             f"python -m bench.fleet_scale --devices {n} --direct --store {store_dir} --build-only")
        server = MlflowServer(store.root, workers=workers).start(300)
        try:
            _command(server.uri, COMMANDS["edgeq aggregate"], True)  # the aggregates stored: later runs write nothing
            best: dict[tuple[str, bool], float] = {}
            outputs: dict[tuple[str, bool], tuple[int, str]] = {}
            before = _load()
            chosen = {k: v for k, v in COMMANDS.items() if not commands or k in commands}
            for r in range(rounds):
                for name, args in chosen.items():
                    for verify in ((True, False) if r % 2 == 0 else (False, True)):
                        took = _command(server.uri, args, verify, outputs)
                        best[name, verify] = min(took, best.get((name, verify), took))
            notes.append(f"{n:,} devices: {before} before, {_load()} after the commands")
            same = [k for k, a in chosen.items() if outputs[" ".join(a), True] == outputs[" ".join(a), False]]
            notes.append(f"{n:,} devices: the same exit code and output verified and unverified: {', '.join(same) or 'none'}"
                         + "".join(f"; DIFFERENT: {k}" for k in chosen if k not in same))
            inproc = in_process(server.uri, n, rounds) if in_proc else {}
        finally:
            server.stop()
        rows.append((n, best, inproc))
        print(_table(rows[-1:], rounds), flush=True)
    return _table(rows, rounds) + "\n\n" + "\n".join(notes)


def in_process(uri: str, devices: int, rounds: int) -> dict[str, float]:
    """Seconds, best of ``rounds``: the register read, trust_for, and read_runs on every device run, verified or not."""
    from edge import evidence as signed
    from registry_tools import enrolment, evidence
    from registry_tools.rest_client import RestClient

    client = RestClient(uri)
    best = lambda fn: min(_timed(fn) for _ in range(rounds))  # noqa: E731
    trust = evidence.trust_for(client, MODEL)
    scan = evidence.device_runs(client, trust, limit=devices + 10)
    runs = scan.runs
    found = evidence.read_runs(runs, trust)
    counted = sum(len(v) for v in found.reports.values())
    out = {"register read (enrolment.read)": best(lambda: enrolment.read(client)),
           "trust_for (model + register)": best(lambda: evidence.trust_for(client, MODEL)),
           "device_runs (search, all runs)": best(lambda: evidence.device_runs(client, trust, limit=devices + 10)),
           "read_runs verified": best(lambda: evidence.read_runs(runs, trust))}
    verify, read = signed.verify, enrolment.read
    unverified()
    try:
        plain = evidence.trust_for(client, MODEL)
        out["read_runs unverified"] = best(lambda: evidence.read_runs(runs, plain))
        assert sum(len(v) for v in evidence.read_runs(runs, plain).reports.values()) == counted
    finally:
        signed.verify, enrolment.read = verify, read
    out["runs"] = float(len(runs))
    out["votes"] = float(counted)
    return out


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _table(rows: list, rounds: int = 3) -> str:
    lines = ["| devices (SQLite) | reader | verified | unverified baseline | verified / baseline |", "|---|---|---|---|---|"]
    for n, best, inproc in rows:
        for name in COMMANDS:
            if (name, True) not in best:
                continue
            v, u = best[name, True], best[name, False]
            lines.append(f"| {n:,} | `{name}` (fresh process, best of {rounds}) | {v:.2f} s | {u:.2f} s | {v / u:.2f} |")
        if not inproc:
            continue
        v, u = inproc["read_runs verified"], inproc["read_runs unverified"]
        lines.append(f"| {n:,} | in-process `read_runs` on all {int(inproc['runs']):,} device runs "
                     f"({int(inproc['votes']):,} votes) | {v:.3f} s | {u:.3f} s | {v / u:.2f} |")
        lines.append(f"| {n:,} | in-process register read (`enrolment.read`, {n:,} tags) | "
                     f"{inproc['register read (enrolment.read)']:.3f} s | — | — |")
        lines.append(f"| {n:,} | in-process `trust_for` / `device_runs` (all runs) | "
                     f"{inproc['trust_for (model + register)']:.3f} s / {inproc['device_runs (search, all runs)']:.2f} s | — | — |")
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:2] == ["edgeq"]:
        return edgeq_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    d = sub.add_parser("device", help="the device's signing path, per report")
    d.add_argument("--reports", type=int, default=1000)
    d.add_argument("--state-dir", type=Path, default=None, help="a directory on the disk to measure (default: $TMPDIR)")
    r = sub.add_parser("readers", help="the readers on bench/fleet_scale.py's stores, verified vs unverified")
    r.add_argument("--devices", type=int, nargs="+", default=[1000, 10000])
    r.add_argument("--store", type=Path, required=True, metavar="DIR")
    r.add_argument("--workers", type=int, default=4)
    r.add_argument("--rounds", type=int, default=3)
    r.add_argument("--command", dest="commands", action="append", choices=list(COMMANDS),
                   help="time only these readers (repeatable; default: all)")
    r.add_argument("--no-in-process", dest="in_proc", action="store_false", help="skip the in-process timings")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "300")
    if args.what == "device":
        print(device(args.reports, args.state_dir))
    else:
        print(readers(args.store, args.devices, args.workers, args.rounds, args.commands, args.in_proc))


if __name__ == "__main__":
    main()
