"""Run ``python -m app`` with every way of unpickling recorded: proof that the serving path never unpickles.

    python -m tests.reliability.support.pickle_guard REPORT_FILE

``pickle.load``/``loads``/``Unpickler``, ``torch.load`` and ``torch.serialization.load`` are wrapped
before the app is imported, and an audit hook catches ``pickle.find_class`` (raised by any unpickling
that resolves a global, which is what a malicious pickle needs). Each call appends one line to
REPORT_FILE at once, so the record survives however the process ends.
"""

from __future__ import annotations

import functools
import pickle
import runpy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _recorder(report: Path) -> Callable[[str], None]:
    def record(what: str) -> None:
        with report.open("a") as out:
            out.write(what + "\n")

    return record


def _wrap(owner: Any, name: str, record: Callable[[str], None]) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def recorded(*args: Any, **kwargs: Any) -> Any:
        record(f"{owner.__name__}.{name}")
        return original(*args, **kwargs)

    setattr(owner, name, recorded)


def install(report: Path) -> None:
    """Wrap every unpickling entry point and add the audit hook; ``report`` is created empty."""
    report.write_text("")
    record = _recorder(report)
    for name in ("load", "loads"):
        _wrap(pickle, name, record)

    class RecordedUnpickler(pickle.Unpickler):  # a subclass, so code that subclasses Unpickler still works
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            record("pickle.Unpickler")
            super().__init__(*args, **kwargs)

    pickle.Unpickler = RecordedUnpickler  # type: ignore[misc]
    import torch  # wrapped here, before the app imports it, so ``from torch import load`` sees the wrapper too

    _wrap(torch, "load", record)
    _wrap(torch.serialization, "load", record)

    def audit(event: str, args: tuple[Any, ...]) -> None:
        if event == "pickle.find_class":
            record(f"pickle.find_class {args[0]}.{args[1]}")

    sys.addaudithook(audit)


def unpickling_calls(report: Path) -> list[str]:
    """What the guarded process recorded (empty: it never unpickled anything)."""
    return [line for line in report.read_text().splitlines() if line]


def main() -> None:
    report = Path(sys.argv[1])
    install(report)
    sys.argv = ["app"]
    runpy.run_module("app", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
