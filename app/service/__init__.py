"""The HTTP service: the Starlette app, its routes and lifespan, auth, metrics, and the uvicorn server."""
