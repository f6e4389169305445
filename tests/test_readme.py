"""The README's webhook verification example works as it says."""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from dialgw.webhooks.signing import webhook_headers

README = Path(__file__).resolve().parents[1] / "README.md"
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def example_namespace() -> dict:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Verifying a webhook"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code.replace('"whsec_..."', repr(SECRET)), "README.md", "exec"), namespace)
    return namespace


def signed(body: bytes, event_id: str = "evt_1", at: float | None = None) -> dict[str, str]:
    return webhook_headers(
        secrets=[SECRET], event_id=event_id, event_name="call.answered",
        timestamp=int(time.time() if at is None else at), body=body, user_agent="dialgw/test",
    )


class ReadmeExampleTests(SynchronousTestCase):
    def test_verifies_dedupes_and_rejects(self) -> None:
        handle = example_namespace()["handle"]
        body = b'{"id":"evt_1","event":"call.answered","session_uuid":"acW68-x","status":"answered"}'
        headers = signed(body)
        self.assertEqual(handle(body, headers), 204)
        self.assertEqual(handle(body, headers), 204)
        self.assertEqual(handle(body.replace(b"answered", b"ended"), headers), 400)
        stale = signed(body, "evt_2", at=time.time() - 3600)
        self.assertEqual(handle(body, stale), 400)
