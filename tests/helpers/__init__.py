"""Helpers shared by the test modules (tests/ is on sys.path, so `from helpers.x import y`).

- server.py: a private copy of the demo ocean's home, the test servers' settings, a real
  Ray Serve server on loopback, and the error-contract assertion.
- local.py: the same app over the in-process backend, behind FastAPI's TestClient.
- api.py: client-side calls and waits shared by both (chat, metrics, `wait_until`, the
  `snapshot` of everything a refused request must leave unchanged).
- routing.py: one forward of a token-level plan, the input and trace call at one module.
- adapter_edits.py: edits that break a copy of a PEFT adapter, for the validation tests.
"""
