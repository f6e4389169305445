"""Run trial and end with one plain line: ``N passed, N failed, N skipped``.

CI does not read trial's own summary, so ``make test`` runs the suite
through this wrapper. It exits with trial's exit status, or 1 when trial
passed but ``--lint=failed`` says ``make lint`` did not: the lint run then
counts as one failure in the closing line, which stays the last line.
"""

from __future__ import annotations

import re
import subprocess
import sys


def count(summary: str, name: str) -> int:
    match = re.search(rf"\b{name}=(\d+)", summary)
    return int(match.group(1)) if match else 0


def main(argv: list[str]) -> int:
    lint_failed = "--lint=failed" in argv
    argv = [arg for arg in argv if not arg.startswith("--lint=")]
    command = [sys.executable, "-m", "twisted.trial", *argv]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, errors="replace")
    assert process.stdout is not None
    summary = ""
    for line in process.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        if line.startswith(("PASSED", "FAILED")):
            summary = line
    status = process.wait()
    passed = count(summary, "successes")
    failed = sum(count(summary, name) for name in ("failures", "errors", "unexpectedSuccesses"))
    skipped = count(summary, "skips")
    if not summary:
        failed = max(failed, 1)
    if status and not failed:
        failed = 1
    if lint_failed:
        print("make lint failed: ruff's or mypy's findings are printed before the tests")
        failed += 1
        status = status or 1
    line = f"{passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    print(line)
    return status or (1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
