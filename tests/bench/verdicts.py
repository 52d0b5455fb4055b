"""Seconds to verdict for the timing-sensitive scenarios, at the production probe timeout.

    python -m tests.bench.verdicts [--timeout 20] [--all]

Runs the rows of the verdict matrix (tests/app/probe/scenarios.py) marked `bench`: a listener
that never greets, a slow drip, implicit TLS on a STARTTLS port and the reverse, nothing
listening, an unknown host; SMTP and IMAP each. `--all` runs every row. Each probe has a server
of its own (or shares Dovecot, which serves many at once), so they all run at the same time and
the whole run takes about one timeout. Prints one line per probe - scenario, protocol, expected
and actual code, seconds to verdict, the row's window and whether both held - then a JSON line.
Exits 1 if any probe missed its code or its window.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.app.probe.scenarios import (
    SCENARIOS,
    Run,
    Scenario,
    Servers,
    matrix_prober,
    probe,
)
from tests.bench.environment import machine_reference, print_result
from tests.servers.tls import make_pki


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=20.0,
                        help="the probe timeout in seconds (production default: 20)")
    parser.add_argument("--all", action="store_true", help="run every row, not just the timed")
    args = parser.parse_args()
    reference = machine_reference()
    chosen = [s for s in SCENARIOS if args.all or s.row.bench]
    # The bad-certificate rows make aiosmtpd log our (correct) refusal of its certificate as an
    # error with a traceback; that is the expected outcome here, not news.
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)

    with tempfile.TemporaryDirectory() as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        pki = make_pki(tmp / "pki")
        servers = stack.enter_context(Servers(tmp, pki))
        prober = matrix_prober(pki, args.timeout)
        # Servers first, in this thread (the shared ones start lazily), then every probe at once.
        targets = [stack.enter_context(s.side.setup(servers)) for s in chosen]
        with ThreadPoolExecutor(max_workers=len(chosen)) as pool:
            runs = list(pool.map(lambda pair: probe(pair[0], pair[1], prober),
                                 zip(chosen, targets, strict=True)))

    rows = [_result(scenario, outcome, args.timeout) for scenario, outcome in zip(
        chosen, runs, strict=True)]
    header = ("scenario", "protocol", "encryption", "expected", "code", "seconds", "window", "ok")
    table = [header, *([str(r[k]) for k in header] for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    all_ok = all(r["ok"] for r in rows)
    print_result({"timeout_s": args.timeout, "all_ok": all_ok, "results": [
        {k: r[k] for k in ("scenario", "protocol", "encryption", "code", "seconds", "ok")}
        for r in rows
    ]}, reference)
    sys.exit(0 if all_ok else 1)


def _result(scenario: Scenario, outcome: Run, timeout: float) -> dict[str, object]:
    low, high = scenario.row.timing.window(timeout)
    code = outcome.result.error_code
    return {
        "scenario": scenario.row.key,
        "protocol": str(scenario.protocol),
        "encryption": str(scenario.side.encryption),
        "expected": scenario.expected or "success",
        "code": code or "success",
        "seconds": round(outcome.seconds, 3),
        "window": f"{low:.1f}-{high:.1f}",
        "ok": code == scenario.expected and low <= outcome.seconds <= high,
    }


if __name__ == "__main__":
    main()
