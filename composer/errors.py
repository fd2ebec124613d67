"""Composer's own request errors (torch-free, so HTTP layers can import them cheaply).

Contract: `ComposerError` is a request Composer cannot serve as asked (a 400: unknown
expert, no base model...); `ExpertUnavailable` is a request whose plan needs an expert that
failed on its host and is quarantined (a 503: retried, routing no longer picks it);
`NonFiniteOutput` names the batch rows whose logits turned NaN/Inf (the host isolates the
expert that made them).
"""


class ComposerError(ValueError):
    """A request Composer cannot serve as asked (unknown expert, no base model, ...)."""


class ExpertUnavailable(RuntimeError):
    """The plan needs an expert that is quarantined (it failed when a host loaded or ran it)."""

    headers = {"Retry-After": "1"}  # noqa: RUF012 - read by the HTTP layer: retry now, routing has moved on


class NonFiniteOutput(RuntimeError):
    """Rows of a generation whose logits were NaN or Inf (what an expert that cannot serve makes)."""

    def __init__(self, rows: list[int]):
        super().__init__(f"the model's output was NaN or Inf for batch row(s) {rows}")
        self.rows = rows
