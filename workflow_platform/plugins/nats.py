"""NATS actions. Publishes go to JetStream (stream created on first use) with a Nats-Msg-Id derived from the
run's root, the step and the subject, so neither a retried step nor a re-executed run stores the same message
twice (within the stream's duplicate window, resources.jetstream.DUPLICATE_WINDOW_S for the streams created here)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from pydantic import Field

from workflow_platform.language.actions import (
    Action,
    ActionError,
    ActionInput,
    ActionOutput,
    StepContext,
    Touched,
    plugin,
)
from workflow_platform.resources.jetstream import ensure_stream

if TYPE_CHECKING:  # clients and resources are heavy imports; validation must stay light
    from nats.aio.client import Client
    from nats.js import JetStreamContext

    from workflow_platform.resources.nats import NatsResource

SUBJECT = r"^[^\s*>]+(\.[^\s*>]+)*$"


class PublishInput(ActionInput):
    subject: str = Field(pattern=SUBJECT, description="e.g. reports.sales.daily")
    message: Any = Field(description="an object/list (sent as JSON) or a string")
    headers: dict[str, str] = Field(default_factory=dict)
    stream: str | None = Field(
        None, description="stream to create if none holds the subject (default: derived)"
    )
    msgId: str | None = Field(
        None,
        description="deduplication id (default: derived from the run's root, step and subject, so a re-execution "
        "publishes nothing new)",
    )


class PublishEachInput(ActionInput):
    subject: str = Field(pattern=SUBJECT, description="e.g. fraud.alerts")
    messages: list[Any] = Field(
        description="one message per item (objects/lists as JSON, strings as they are)"
    )
    idField: str | None = Field(
        None,
        description="the field whose value identifies a message: Nats-Msg-Id is `<subject>:<value>`, so the same "
        "item is never published twice, by a retry or by another run (default: the run's root, step and position)",
    )
    headers: dict[str, str] = Field(default_factory=dict)
    stream: str | None = Field(
        None, description="stream to create if none holds the subject (default: derived)"
    )


class RequestInput(ActionInput):
    subject: str = Field(pattern=SUBJECT)
    message: Any = None
    timeoutMs: int = Field(5000, ge=1, le=600_000)


def encode(message: Any) -> bytes:
    return message.encode() if isinstance(message, str) else json.dumps(message, ensure_ascii=False).encode()


def stream_name(subject: str) -> str:
    """The stream created for a subject on first publish: 'fraud.alerts' -> FRAUD holding 'fraud.>'."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", subject.split(".")[0]).upper() or "WORKFLOWS"


def publish(nats_resource: NatsResource, spec: PublishInput, ctx: StepContext) -> ActionOutput:
    from nats.errors import NoRespondersError
    from nats.js.errors import NoStreamResponseError

    body = encode(spec.message)
    msg_id = spec.msgId or _derived_id(ctx, spec.subject)
    headers = {**spec.headers, "Nats-Msg-Id": msg_id}

    async def work(client: Client, js: JetStreamContext):  # noqa: ANN202 - PubAck
        try:
            return await js.publish(spec.subject, body, headers=headers, timeout=5)
        except (NoStreamResponseError, NoRespondersError):
            # No stream holds this subject yet: create one, as the original system did, and publish again.
            await ensure_stream(js, spec.subject, spec.stream or stream_name(spec.subject))
            return await js.publish(spec.subject, body, headers=headers, timeout=5)

    ack = nats_resource.run(work, ctx.timeout_s)
    result: dict[str, Any] = {
        "subject": spec.subject,
        "stream": ack.stream,
        "seq": ack.seq,
        "duplicate": bool(ack.duplicate),
        "msgId": msg_id,
        "size": len(body),
    }
    metadata = {"stream": ack.stream, "sequence": ack.seq, "duplicate": bool(ack.duplicate)}
    return ActionOutput(result, [Touched(("nats", *spec.subject.split(".")), "message published", metadata)])


def _derived_id(ctx: StepContext, *parts: object) -> str:
    """A Nats-Msg-Id from the execution key (the run's root), the step and `parts`."""
    text = "/".join(str(part) for part in (ctx.execution_key, ctx.step_id, *parts))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _message_id(spec: PublishEachInput, ctx: StepContext, index: int, message: Any) -> str:
    if spec.idField is None:
        return _derived_id(ctx, spec.subject, index)
    value = message.get(spec.idField) if isinstance(message, dict) else None
    if value is None:
        raise ActionError(f"messages[{index}] has no {spec.idField!r} to identify it (idField)")
    return f"{spec.subject}:{value}"


def publish_each(nats_resource: NatsResource, spec: PublishEachInput, ctx: StepContext) -> ActionOutput:
    """One JetStream message per item; JetStream drops an id it has seen (within the stream's duplicate window)."""
    from nats.errors import NoRespondersError
    from nats.js.errors import NoStreamResponseError

    outgoing = [
        (_message_id(spec, ctx, index, message), encode(message))
        for index, message in enumerate(spec.messages)
    ]

    async def work(client: Client, js: JetStreamContext) -> list:
        acks = []
        for msg_id, body in outgoing:
            headers = {**spec.headers, "Nats-Msg-Id": msg_id}
            try:
                acks.append(await js.publish(spec.subject, body, headers=headers, timeout=5))
            except (NoStreamResponseError, NoRespondersError):
                await ensure_stream(js, spec.subject, spec.stream or stream_name(spec.subject))
                acks.append(await js.publish(spec.subject, body, headers=headers, timeout=5))
        return acks

    acks = nats_resource.run(work, ctx.timeout_s) if outgoing else []
    duplicates = sum(bool(ack.duplicate) for ack in acks)
    result = {
        "subject": spec.subject,
        "published": len(acks) - duplicates,
        "duplicates": duplicates,
        "stream": acks[0].stream if acks else None,
        "msgIds": [msg_id for msg_id, _ in outgoing],
    }
    metadata = {"published": len(acks) - duplicates, "duplicates": duplicates}
    touched = [Touched(("nats", *spec.subject.split(".")), "messages published", metadata)] if acks else []
    return ActionOutput(result, touched)


def request(nats_resource: NatsResource, spec: RequestInput, ctx: StepContext) -> ActionOutput:
    async def work(client: Client, js: JetStreamContext) -> bytes:
        from nats.errors import TimeoutError as NoReply

        try:
            reply = await client.request(spec.subject, encode(spec.message), timeout=spec.timeoutMs / 1000)
        except NoReply:
            raise TimeoutError(f"no reply on {spec.subject} within {spec.timeoutMs} ms") from None
        return reply.data

    data = nats_resource.run(work, ctx.timeout_s)
    text = data.decode("utf-8", errors="replace")
    try:
        value: Any = json.loads(text)
    except ValueError:
        value = text
    return ActionOutput({"subject": spec.subject, "data": value})


NATS = plugin(
    "nats",
    "NATS messaging with JetStream persistence",
    "nats",
    Action("publish", PublishInput, publish, "publish a message on JetStream (stream created on first use)"),
    Action(
        "publishEach", PublishEachInput, publish_each, "publish one message per item, each with its own id"
    ),
    Action("request", RequestInput, request, "send a request and wait for the reply"),
)
