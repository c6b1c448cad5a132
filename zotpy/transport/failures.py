"""One line naming why a call to another server failed, for logs and error replies.

Twisted's client wraps the real cause (connection refused, TLS failure, a reset) in ``ResponseFailed``
or ``ResponseNeverReceived`` whose message is only the wrapper's name; an operator needs the reasons.
"""

from __future__ import annotations

__all__ = ["describe_failure"]


def describe_failure(error: BaseException) -> str:
    """The reasons inside Twisted's wrapper errors joined by "; ", else the error's message, else
    its type's name (never an empty string)."""
    reasons = getattr(error, "reasons", None)
    if reasons:
        return "; ".join(str(reason.value) or type(reason.value).__name__ for reason in reasons)
    return str(error) or type(error).__name__
