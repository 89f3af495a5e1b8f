"""The front end's handle on an engine process: `AsyncEngineClient` and what it speaks."""

from slipstream.engine.client.async_client import AsyncEngineClient, RequestObserver, TextTokenizer
from slipstream.engine.generation import (
    EngineDeadError,
    EngineStartupError,
    GenerationDelta,
    GenerationRequest,
    LogprobEntry,
    RequestRejectedError,
)

__all__ = [
    "AsyncEngineClient",
    "EngineDeadError",
    "EngineStartupError",
    "GenerationDelta",
    "GenerationRequest",
    "LogprobEntry",
    "RequestObserver",
    "RequestRejectedError",
    "TextTokenizer",
]
