"""The OpenAI-compatible HTTP front end: app factory, routes, serving."""
