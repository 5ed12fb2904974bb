"""JetStream streams, created where the platform first writes to a subject (no Dagster: the fraud stream and
the demo loaders use it outside runs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nats.js import JetStreamContext

# JetStream drops a Nats-Msg-Id it has seen within the stream's duplicate window (2 minutes by default): a
# re-execution after that would publish again. A day covers re-executing a failed or suspicious run the same day;
# the ids it remembers cost memory per message published in the window (hundreds of bytes each).
DUPLICATE_WINDOW_S = 24 * 3600


async def ensure_stream(
    js: JetStreamContext, subject: str, name: str, duplicate_window_s: float = DUPLICATE_WINDOW_S
) -> None:
    """Make stream `name` hold `subject`: created for the subject's first token and all below it
    ('fraud.alerts': 'fraud' and 'fraud.>'), or given the subject if it exists without it.
    `duplicate_window_s` applies to a stream created here (0: JetStream's default, 2 minutes)."""
    from nats.js.errors import NotFoundError

    root = subject.split(".")[0]
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        await js.add_stream(name=name, subjects=[root, f"{root}.>"], duplicate_window=duplicate_window_s)
        return
    if subject not in info.config.subjects and f"{root}.>" not in (info.config.subjects or []):
        info.config.subjects = [*(info.config.subjects or []), subject]
        await js.update_stream(info.config)
