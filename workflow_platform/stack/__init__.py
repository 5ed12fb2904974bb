"""The embedded local stack: real PostgreSQL, NATS JetStream, S3 and Pathway servers on loopback ports."""

from workflow_platform.stack.embedded import SERVICES, EmbeddedStack
from workflow_platform.stack.processes import ServiceHandle, ServiceStartError, StackError

__all__ = ["SERVICES", "EmbeddedStack", "ServiceHandle", "ServiceStartError", "StackError"]
