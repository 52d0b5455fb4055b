from __future__ import annotations

from app.client.watch import MAX_INTERVAL_SECONDS, Counts, follow


def status(state: str, processed: int, total: int = 10, **extra) -> dict:
    return {"status": state, "isCompleted": state in ("completed", "failed", "cancelled"),
            "total": total, "processed": processed, "succeeded": processed, "failed": 0,
            "invalid": 0, "cancelled": 0, **extra}


class Source:
    def __init__(self, answers: list[dict]) -> None:
        self.answers = answers
        self.asked = 0

    def status(self, request_id: str) -> dict:
        assert request_id == "job1"
        self.asked += 1
        return self.answers.pop(0)


def test_follow_polls_until_the_job_ends_and_slows_down_to_a_ceiling():
    answers = [status("queued", 0)] + [status("running", 3)] * 10 + [status("completed", 10)]
    seen: list[dict] = []
    sleeps: list[float] = []
    final = follow(Source(list(answers)), "job1", seen.append, sleep=sleeps.append)
    assert final == answers[-1] and seen == answers
    assert len(sleeps) == len(answers) - 1
    assert sleeps[0] == 0.5 and sleeps == sorted(sleeps)
    assert max(sleeps) == MAX_INTERVAL_SECONDS


def test_a_job_already_ended_is_polled_once():
    source = Source([status("cancelled", 4)])
    follow(source, "job1", lambda _s: None, sleep=lambda _s: (_ for _ in ()).throw(AssertionError))
    assert source.asked == 1


def test_counts_by_status():
    counts = Counts.of({"total": 12, "processed": 7, "succeeded": 3, "failed": 2, "invalid": 1,
                        "cancelled": 1, "waiting": {"reason": "team_login_quota", "rows": 5}})
    assert (counts.pending, counts.unsuccessful, counts.waiting) == (5, 4, 5)
    assert counts.line() == ("3 verified, 2 failed, 1 invalid, 1 cancelled, 5 pending, "
                             "5 waiting for the login quota")
    assert Counts.of({"total": 2, "processed": 0, "waiting": None}).line() == \
        "0 verified, 0 failed, 2 pending"
