"""Users, roles, password hashing, sessions, CSRF, sign-in throttling and API tokens."""
