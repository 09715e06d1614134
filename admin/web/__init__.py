"""The web panel: FastAPI app factory, routes, templates."""
