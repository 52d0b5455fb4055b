"""docs/ARCHITECTURE.md stays true to the code: what it names exists, and its state diagrams
show exactly the states the code has.

A rename or a new status value without the doc's update turns this red, which is the point: a
map that silently drifts is worse than none.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.jobs import webhooks
from app.models import JobStatus, RowState

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "ARCHITECTURE.md"
CODE_PACKAGES = ("app", "workers")

# What a backticked span must look like to be checked; anything else (a column, an HTTP route,
# SQL) is prose.
_PATH = re.compile(r"(?:app|workers|tests|docs|deploy)/[\w/.-]*")
_TEST = re.compile(r"(tests/[\w/]+\.py)::(\w+)")
_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
_SETTING = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")
_BACKTICKED = re.compile(r"`([^`\n]+)`")
_MERMAID = re.compile(r"```mermaid\n(.*?)```", re.DOTALL)
_TRANSITION = re.compile(r"^\s*(\S+)\s*-->\s*(\S+)\s*(?::\s*(.*))?$")
# A label names the functions that make the transition, as module.function (short module
# names allowed): the words before any parenthesised comment.
_LABEL_NAME = re.compile(r"[a-z_]+\.[A-Za-z_]\w*")


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def backticked(text: str) -> list[str]:
    # Mermaid blocks hold no backticks of their own but are fenced by them: drop them first.
    return _BACKTICKED.findall(_MERMAID.sub("", text).replace("```", ""))


@cache
def code_modules() -> tuple[str, ...]:
    """Every importable module of the code, as a dotted name."""
    names = []
    for package in CODE_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "migrations" in parts:
                continue  # Alembic's files are not importable modules
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return tuple(sorted(names))


def resolve(name: str) -> Any:
    """The object a dotted name in the doc means: a full path (`app.jobs.runner.claim_row`) or
    one starting at a module's last names (`runner.claim_row`), which must be unambiguous."""
    parts = name.split(".")
    for split in range(len(parts), 0, -1):
        head = ".".join(parts[:split])
        modules = [m for m in code_modules() if m == head or m.endswith("." + head)]
        if not modules:
            continue
        if len(modules) > 1:
            raise LookupError(f"{name}: {head!r} could be any of {modules}; write it in full")
        found: Any = importlib.import_module(modules[0])
        for attribute in parts[split:]:
            if not hasattr(found, attribute):
                raise LookupError(f"{name}: {modules[0]} has no {'.'.join(parts[split:])}")
            found = getattr(found, attribute)
        return found
    raise LookupError(f"{name}: no module of {CODE_PACKAGES} is called {parts[0]!r}")


def functions_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


def problems_with_names(text: str) -> Iterator[str]:
    """What the doc names in backticks that the code does not have."""
    setting_names = {field.alias for field in Settings.model_fields.values() if field.alias}
    for span in backticked(text):
        if match := _TEST.fullmatch(span):
            path = ROOT / match[1]
            if not path.is_file():
                yield f"{span}: no file {match[1]}"
            elif match[2] not in functions_in(path):
                yield f"{span}: {match[1]} has no test {match[2]}"
        elif _PATH.fullmatch(span):
            if not (ROOT / span).exists():
                yield f"{span}: no such file or directory"
        elif _DOTTED.fullmatch(span):
            try:
                resolve(span)
            except (LookupError, ImportError) as exc:
                yield str(exc)
        elif _SETTING.fullmatch(span) and span not in setting_names:
            yield f"{span}: not a setting of app.config.Settings"


def diagrams(text: str) -> list[str]:
    return _MERMAID.findall(text)


def diagram_states(diagram: str) -> set[str]:
    states = set()
    for line in diagram.splitlines():
        if match := _TRANSITION.match(line):
            states.update(s for s in match.group(1, 2) if s != "[*]")
    return states


def diagram_labels(diagram: str) -> list[str]:
    return [match[3] for line in diagram.splitlines()
            if (match := _TRANSITION.match(line)) and match[3]]


def diagram_named(text: str, states: set[str]) -> str:
    """The one diagram whose states include all of `states`."""
    found = [d for d in diagrams(text) if states <= diagram_states(d)]
    assert len(found) == 1, f"expected one diagram with the states {sorted(states)}"
    return found[0]


JOB_STATES = {s.value for s in JobStatus}
ROW_STATES = {s.value for s in RowState}
WEBHOOK_STATES = {webhooks.PENDING, webhooks.DELIVERED, webhooks.FAILED}


def test_every_module_function_setting_and_test_the_doc_names_exists() -> None:
    assert list(problems_with_names(doc_text())) == []


def test_a_misspelt_name_is_caught() -> None:
    # The checks above must be able to fail: each kind of name, broken once.
    broken = ("`app.jobs.runner.claim_rows` `runner.no_such` `app/jobs/runnr.py` "
              "`tests/app/jobs/test_runner.py::test_nothing` `PROBE_MAX_PER_HOSTS` "
              "`errors.ProbeError`")
    found = list(problems_with_names(broken))
    assert len(found) == 6, found
    assert "could be any of" in found[-1]  # app.probe.errors or app.web.errors


def test_the_doc_names_the_main_path() -> None:
    # Not exhaustive: the steps an engineer must find by name.
    named = set(backticked(doc_text()))
    for name in ("app.web.connect.connect", "app.jobs.intake.submit_job",
                 "workers.publisher.CeleryPublisher", "workers.tasks.run_rows",
                 "app.jobs.runner.RowProcessor.run", "app.jobs.hostgate.RedisHostGate.acquire",
                 "app.jobs.loginquota.RedisLoginQuota.take",
                 "app.probe.prober.Prober.probe_sync", "app.probe.session.ProbeSession",
                 "app.probe.streams.MailStream", "app.jobs.runner.record_result",
                 "app.jobs.finish.finish_job", "app.jobs.webhooks.deliver_webhook",
                 "app.web.accounts.connect_one", "app.jobs.sweeper.sweep"):
        assert name in named, name


@pytest.mark.parametrize(("states", "name"), [(JOB_STATES, "job"), (ROW_STATES, "row"),
                                              (WEBHOOK_STATES, "webhook")])
def test_each_state_diagram_has_exactly_the_codes_states(states: set[str], name: str) -> None:
    diagram = diagram_named(doc_text(), states)
    assert diagram_states(diagram) == states, f"the {name} diagram"


def test_every_diagram_state_is_a_status_value_in_the_code() -> None:
    text = doc_text()
    assert len(diagrams(text)) == 3
    assert all(d.lstrip().startswith("stateDiagram-v2") for d in diagrams(text))
    for diagram in diagrams(text):
        assert diagram_states(diagram) - (JOB_STATES | ROW_STATES | WEBHOOK_STATES) == set()


def test_every_transition_is_labelled_with_functions_that_exist() -> None:
    for diagram in diagrams(doc_text()):
        for label in diagram_labels(diagram):
            names = _LABEL_NAME.findall(label.split("(")[0])
            assert names, f"transition without a function: {label!r}"
            for name in names:
                assert callable(resolve(name)), name


def test_a_state_the_code_does_not_have_is_caught() -> None:
    diagram = "stateDiagram-v2\n    pending --> testng : runner.claim_row\n"
    assert diagram_states(diagram) - ROW_STATES == {"testng"}


def test_every_code_package_is_on_the_module_map() -> None:
    named = set(backticked(doc_text()))
    packages = {str(path.parent.relative_to(ROOT)) + "/"
                for package in CODE_PACKAGES for path in (ROOT / package).rglob("__init__.py")
                if "versions" not in path.parts}
    assert packages - named == set()
