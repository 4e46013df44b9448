"""Network stage: the errors the network package raises for things outside the code."""


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here (missing package or device)."""
