"""Webhooks (SPEC §3): pure building blocks for the outbox sender.

- ``signing``: Standard Webhooks 1.0 signatures and headers.
- ``payload``: the JSON body of one session event.
- ``policy``: which answers are retried, and when the next attempt is.
"""
