"""The front end's handle on an engine process (`AsyncEngineClient`), by concept:

- `async_client`: `AsyncEngineClient`, the facade: start, generate, shutdown, state
- `process_handle`: spawning the engine process, accepting its socket, stopping it
- `connection`: the socket protocol of a started engine: frames out, messages routed in
- `detokenize`: token deltas → text deltas, stop strings held back and cut
- `observer`: the per-request timings (`RequestObserver`) the server's metrics receive
"""

from slipstream.engine.client.async_client import AsyncEngineClient
from slipstream.engine.client.detokenize import TextTokenizer
from slipstream.engine.client.observer import RequestObserver
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
