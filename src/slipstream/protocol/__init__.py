"""Wire types and (de)serialisation: OpenAI request/response models, errors, SSE framing."""
