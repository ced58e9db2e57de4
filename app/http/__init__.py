"""The HTTP edge: routes, uploads, disconnects, middleware, schemas and error answers over the engine."""
