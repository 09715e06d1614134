"""The APEX CRM backend's application package (here: its SQLAlchemy models)."""
