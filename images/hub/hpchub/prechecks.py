"""Pre-spawn checks: site commands run over SSH as the user before a server starts
(e.g. a quota check). A non-zero exit stops the spawn with the check's message.

Values: ``systems.<name>.preSpawnChecks.<check>: {command: [argv...], message, timeoutSeconds}``.
The argv comes from values (operators), never from users, and is quoted anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .sshpool import Result, SSHError

Runner = Callable[[Sequence[str], float], Awaitable[Result]]


class PreSpawnCheckFailed(RuntimeError):
    """A check refused the spawn; the message is the operator's text for the user."""

    def __init__(self, check: str, message: str, output: str = "") -> None:
        super().__init__(message + (f"\n{output}" if output else ""))
        self.check = check
        self.message = message
        self.output = output


@dataclass(frozen=True)
class Check:
    name: str
    command: tuple[str, ...]
    message: str
    timeout: float


def checks_from_values(system_name: str, values: Mapping[str, Any]) -> list[Check]:
    checks = []
    for name, spec in sorted((values or {}).items()):
        command = spec.get("command") or []
        if not command or not all(isinstance(a, str) for a in command):
            raise ValueError(
                f"systems.{system_name}.preSpawnChecks.{name}.command: must be a list of strings"
            )
        checks.append(
            Check(
                name=name,
                command=tuple(command),
                message=spec.get("message") or f"The {name} check failed on {system_name}.",
                timeout=float(spec.get("timeoutSeconds", 30)),
            )
        )
    return checks


async def run_checks(system: str, checks: Sequence[Check], run: Runner) -> None:
    """Run all checks concurrently; raise PreSpawnCheckFailed for the first that fails."""
    if not checks:
        return

    async def one(check: Check) -> tuple[Check, Result | Exception]:
        try:
            return check, await run(check.command, check.timeout)
        except SSHError as e:
            return check, e

    for check, result in await asyncio.gather(*(one(c) for c in checks)):
        if isinstance(result, Exception):
            raise PreSpawnCheckFailed(check.name, f"{system}: the {check.name} check could not run: {result}")
        if not result.ok:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-5:])
            raise PreSpawnCheckFailed(check.name, check.message, tail)
