"""Routes, one module per noun; each exposes ``router`` and is registered in ``create_app``."""
