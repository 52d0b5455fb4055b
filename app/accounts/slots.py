"""Per-host slots for the calls that test one account while a user waits (single connect,
`/test`, PATCH): the same slots, caps and leases as the job runners, so a user's click cannot
push a provider over the cap the workers keep.

A runner sets a row aside when its host is busy; a request cannot, so it polls the gate until
the probe deadline and then gives up with HostBusy (the web layer's 503 `host_busy`).

Inside its slots the test also takes its logins from the team's login quota; refused, it gives
the slots back and raises QuotaExceeded (the web layer's 429 `team_login_quota`) before any
change is written.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from app.jobs.hostgate import HostGate, HostLease
from app.jobs.loginquota import LoginQuota, OpenQuota, QuotaExceeded
from app.probe.model import AccountProbe, AccountProber, Endpoint

log = logging.getLogger(__name__)


class HostBusy(Exception):
    """Every slot of a host stayed taken for the whole wait."""

    def __init__(self, hosts: Sequence[str], retry_after: int) -> None:
        self.hosts = tuple(hosts)
        self.retry_after = retry_after
        names = " and ".join(self.hosts)
        super().__init__(
            f"{names}: every test slot for this host is taken by other tests (the per-host "
            f"limit on concurrent logins); try again in {retry_after} s")


@dataclass(frozen=True)
class HostSlots:
    gate: HostGate
    # How long a request waits for its slots: the probe deadline, so a request waits at most
    # one probe's time before its own probe starts.
    wait_seconds: float
    # Rows the release woke off a host's waiting list; the caller publishes them.
    on_woken: Callable[[Sequence[int]], None] | None = None
    # The caller's team and its login quota: one login per protocol tested.
    team_id: int = 0
    quota: LoginQuota = field(default_factory=OpenQuota)
    poll_seconds: float = 0.15
    monotonic: Callable[[], float] = field(default=time.monotonic)
    sleep: Callable[[float], None] = field(default=time.sleep)

    @contextmanager
    def held(self, hosts: Sequence[str]) -> Iterator[HostLease]:
        """Hold one slot of each host (all at once or none) for the block; HostBusy when
        none frees within wait_seconds. `hosts` names one host per login (SMTP, IMAP): the
        team's quota counts them all, a shared host twice; QuotaExceeded when it is spent."""
        lease = self._acquire(hosts)
        try:
            # After the slots, as a job's row does: refused, nothing was counted, and the
            # slots are given back by the finally.
            decision = self.quota.take(self.team_id, len(hosts))
            if not decision.granted:
                raise QuotaExceeded(decision.wait_seconds)
            yield lease
        finally:
            self._release(lease)

    def probe(self, prober: AccountProber, smtp: Endpoint | None, imap: Endpoint | None
              ) -> AccountProbe:
        """Test an account inside its hosts' slots."""
        with self.held(endpoint_hosts(smtp, imap)):
            return prober.probe_sync(smtp, imap)

    def _acquire(self, hosts: Sequence[str]) -> HostLease:
        deadline = self.monotonic() + self.wait_seconds
        while True:
            decision = self.gate.acquire(hosts)
            if decision.lease is not None:
                return decision.lease
            left = deadline - self.monotonic()
            if left <= 0:
                # A slot is held for at most one probe, so one deadline from now the holders
                # that beat us have finished.
                raise HostBusy(sorted({h.lower() for h in hosts}),
                               max(1, math.ceil(self.wait_seconds)))
            # The gate's own hint is exact for connection spacing and a guess for a full host;
            # poll at least this often so a freed slot is taken quickly.
            pause = decision.wait_seconds or self.poll_seconds
            self.sleep(max(0.01, min(pause, self.poll_seconds, left)))

    def _release(self, lease: HostLease) -> None:
        woken = self.gate.release(lease) or []
        if woken and self.on_woken is not None:
            try:
                self.on_woken(list(woken))
            except Exception:
                # The bell only: the rows are waiting in the database, where the sweeper finds
                # them. The user's own test has finished and its answer must not become a 500.
                log.exception("could not publish %d rows woken by a freed slot", len(woken))


def endpoint_hosts(smtp: Endpoint | None, imap: Endpoint | None) -> list[str]:
    return [e.host for e in (smtp, imap) if e is not None]
