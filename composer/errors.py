"""Composer's own request error (torch-free, so HTTP layers can import it cheaply)."""


class ComposerError(ValueError):
    """A request Composer cannot serve as asked (unknown expert, no base model, ...)."""
