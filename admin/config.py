"""Settings from the environment and `.env`: the only place that reads them."""

from __future__ import annotations

import re
import secrets
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from admin import files, secrets_entropy
from admin.errors import ConfigError
from admin.live import schedule
from admin.urls import mask_url

PACKAGE_DIR = Path(__file__).resolve().parent
SOURCE_ROOT = PACKAGE_DIR.parent

# Values that must never protect a shared deployment (with any case, around any separator).
_KNOWN_WEAK_KEYS = {
    "changeme",
    "change-me",
    "secret",
    "secret-key",
    "secretkey",
    "dev",
    "development",
    "password",
    "insecure",
    "your-secret-key",
    "please-change-me",
    "your-secret-key-here",
    "your-secret-key-here-change-in-production",
    "change-this-in-production",
    "django-insecure",
    "supersecretkey",
    "0123456789abcdef0123456789abcdef",
}
# Words of the placeholders people copy from examples: a key made of them was never random.
_PLACEHOLDER_WORDS = re.compile(
    r"change|replace|example|placeholder|your|here|insecure|default|dummy|sample|todo|"
    r"secret|password|production|staging|development|test"
)
MIN_SECRET_KEY_LENGTH = 32
# What the estimate (secret_key_bits) must reach outside development.
MIN_SECRET_KEY_BITS = 128
_DURATION = re.compile(r"^\s*\d+\s*(us|ms|s|min|h|d)?\s*$")


class Environment(StrEnum):
    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"


def _default_alembic_config() -> Path:
    """The repo's alembic.ini in a source checkout, else the one in the working directory."""
    checkout = SOURCE_ROOT / "alembic.ini"
    if checkout.is_file() and (SOURCE_ROOT / "alembic").is_dir():
        return checkout
    return Path.cwd() / "alembic.ini"


def normalize_database_url(value: str) -> str:
    """Parse a database URL and pin PostgreSQL to psycopg2, the stack's driver.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, which is not a dependency;
    the seed's URLs are written that way and must keep working as they are.
    """
    try:
        url = make_url(value.strip())
    except (ArgumentError, ValueError) as exc:
        raise ValueError("is not a database URL") from exc
    backend, _, driver = url.drivername.partition("+")
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "psycopg2"):
            raise ValueError(f"uses the driver {driver!r}; only psycopg2 is installed")
        url = url.set(drivername="postgresql+psycopg2")
        if not url.database:
            raise ValueError("names no database")
    elif backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise ValueError(f"uses the driver {driver!r}; only pysqlite is supported")
    else:
        raise ValueError(f"uses {backend!r}, which the panel does not support")
    return url.render_as_string(hide_password=False)


# libpq parameters that carry a secret (or where one is kept) when given in a URL's query.
class Settings(BaseSettings):
    """Everything the panel, the CLI, the worker and the entrypoint are configured by."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=False,
        extra="ignore",
        validate_default=True,
    )

    # The two databases.
    database_url: str = Field(
        "sqlite:///var/demo.sqlite3", description="The target: the database being migrated."
    )
    admin_database_url: str = Field(
        "sqlite:///var/admin.sqlite3",
        description="The store: the panel's own database (users, jobs, backups, audit).",
    )
    environment: Environment = Field(
        Environment.DEVELOPMENT, description="development, staging or production."
    )
    secret_key: str | None = Field(
        None,
        description="Key for CSRF tokens and token hashing; at least 32 characters. "
        "Required outside development (there a random one is kept in VAR_DIR/secret-key).",
    )
    alembic_config: Path = Field(
        default_factory=_default_alembic_config,
        description="Path to the managed project's alembic.ini.",
    )
    var_dir: Path = Field(Path("var"), description="Directory for the panel's runtime files.")
    # Follows VAR_DIR unless set: everything the panel writes lives under VAR_DIR by default.
    backup_dir: Path = Field(
        default_factory=lambda data: Path(data["var_dir"]) / "backups",
        description="Where backups are written (default VAR_DIR/backups).",
    )

    # Migrating.
    init_db: bool = Field(
        False, description="Create the target database when it is missing (seed's INIT_DB)."
    )
    migrate_on_start: bool = Field(
        True, description="Entrypoint applies pending migrations before serving."
    )
    start_on_migration_failure: bool = Field(
        False,
        description="Entrypoint serves the panel in a degraded state when the start-up "
        "migration fails, instead of exiting.",
    )
    lock_timeout: str = Field(
        "10s", description="PostgreSQL lock_timeout for migration statements (0 = none)."
    )
    statement_timeout: str = Field(
        "0", description="PostgreSQL statement_timeout for migration statements (0 = none)."
    )
    lock_retries: str = Field(
        "off",
        description="Lock retries of each revision's transaction: a schedule of lock_timeouts "
        "(`5x3s`, `1s,3s,10s`); `off` = one attempt with LOCK_TIMEOUT.",
    )
    lock_retry_pause: float = Field(
        3.0, ge=0, le=3600, description="Seconds between two lock retry attempts."
    )
    lock_retry_final_without_timeout: bool = Field(
        False,
        description="After the lock retry schedule, one last attempt without a lock_timeout "
        "(it waits as long as it takes).",
    )
    migration_lock_wait: float = Field(
        3.0,
        ge=0,
        description="Seconds a run waits for the migration advisory lock before failing.",
    )
    wait_timeout: float = Field(
        60.0,
        gt=0,
        description="Seconds the entrypoint and `serve` wait for the databases to answer.",
    )

    # Connections to the target (the panel's, the CLI's and the workers').
    target_connect_timeout: int = Field(
        5, ge=1, le=600, description="Seconds to establish a connection to the target."
    )
    target_keepalives_idle: int = Field(
        10, ge=1, le=7200, description="Seconds of silence before the first TCP keepalive probe."
    )
    target_keepalives_interval: int = Field(
        5, ge=1, le=600, description="Seconds between unanswered TCP keepalive probes."
    )
    target_keepalives_count: int = Field(
        3, ge=1, le=100, description="Unanswered keepalive probes after which the link is dead."
    )
    target_tcp_user_timeout: int = Field(
        30,
        ge=0,
        le=7200,
        description="Seconds sent data may stay unacknowledged before the link counts as dead "
        "(0 = the OS default).",
    )
    target_read_timeout: float = Field(
        2.0,
        gt=0,
        le=60,
        description="Seconds a read of the target for a page, status, metrics or readiness may "
        "wait for a lock, a statement or a free connection.",
    )
    target_read_pool: int = Field(
        4, ge=1, le=100, description="Connections for those reads, per process and target."
    )

    # Jobs.
    job_cancel_grace: float = Field(
        10.0, gt=0, description="Seconds between SIGTERM and SIGKILL when a job is cancelled."
    )
    job_heartbeat: float = Field(
        2.0, gt=0, description="Seconds between a running job's heartbeats in the store."
    )
    job_lease: float = Field(
        30.0,
        gt=0,
        description="Seconds without a heartbeat after which a running job counts as gone.",
    )
    sse_max_streams: int = Field(
        8,
        ge=1,
        description="Open live-log streams allowed per user, across their sessions and tokens.",
    )
    sse_max_streams_total: int = Field(
        400, ge=1, description="Open live-log streams the whole server allows."
    )
    sse_send_timeout: float = Field(
        20.0,
        gt=0,
        le=600,
        description="Seconds a live-log write may wait for a client that does not read "
        "before that client is dropped.",
    )
    sse_keepalive: float = Field(
        15.0,
        gt=0,
        le=60,
        description="Seconds between keep-alive comments on an idle live-log stream "
        "(proxies close connections that stay silent much longer).",
    )

    # Backups.
    backup_format: Literal["custom", "plain"] = Field(
        "custom", description="pg_dump format: custom (-Fc) or plain (gzip-compressed SQL)."
    )
    backup_before_migrate: bool | None = Field(
        None,
        description="Take and verify a backup before each upgrade/downgrade job "
        "(unset: only in production).",
    )
    backup_keep_last: int = Field(10, ge=0, description="Backups kept by count (0 = no limit).")
    backup_keep_days: int = Field(30, ge=0, description="Backups kept by age (0 = no limit).")
    backup_lock_wait_timeout: str = Field(
        "30s", description="pg_dump --lock-wait-timeout: a held lock fails the backup."
    )
    pg_bin_dir: Path | None = Field(
        None, description="Directory of pg_dump / pg_restore (default: found on PATH)."
    )

    # Rehearsals (admin/rehearsal).
    require_rehearsal: bool | None = Field(
        None,
        description="Refuse an Apply without a successful rehearsal of the same plan and SQL "
        "on a backup taken at the target's current revision (unset: only in production).",
    )
    rehearsal_keep_failed: bool = Field(
        False, description="Keep the scratch database of a failed rehearsal (its name is logged)."
    )
    rehearsal_lock_warning: float = Field(
        5.0,
        ge=0,
        description="Seconds an ACCESS EXCLUSIVE lock may be held in a rehearsal before the "
        "report warns.",
    )
    rehearsal_database_url: str | None = Field(
        None,
        description="Server the rehearsal's scratch database is made on (unset: beside the "
        "target).",
    )

    # Safety: SQL lint (squawk).
    lint_excluded_rules: str = Field(
        "require-lock-timeout,require-statement-timeout,prefer-bigint-over-int,"
        "prefer-identity,prefer-text-field",
        max_length=2000,
        description="squawk rules left out of the SQL lint (comma-separated; empty: none).",
    )
    lint_pg_version: str | None = Field(
        None,
        description="PostgreSQL version squawk lints for, e.g. 15 or 15.4 (unset: squawk's).",
    )

    # Web.
    host: str = Field("127.0.0.1", description="Address the panel listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port the panel listens on.")
    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description="Proxies trusted for X-Forwarded-* headers (uvicorn's setting).",
    )
    session_idle_minutes: int = Field(
        60, ge=1, description="A session ends after this many minutes without a request."
    )
    session_max_hours: int = Field(
        12, ge=1, description="A session ends this many hours after sign-in, whatever happens."
    )
    login_max_failures: int = Field(
        5, ge=1, description="Failed sign-ins per account within the window before throttling."
    )
    login_max_failures_per_address: int = Field(
        20, ge=1, description="Failed sign-ins per client address within the window."
    )
    login_window_minutes: int = Field(
        15, ge=1, description="The window failed sign-ins are counted in."
    )
    password_hash_memory_kib: int = Field(
        65536,
        ge=19456,
        le=4194304,
        description="Memory (KiB) argon2id uses to hash a password (at least 19456, OWASP's "
        "minimum); a hash made at other costs is made again at its next sign-in.",
    )
    password_hash_time_cost: int = Field(
        3, ge=2, le=20, description="argon2id's passes over that memory per hash (at least 2)."
    )

    # Logs.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Application log level."
    )
    log_format: Literal["plain", "json"] = Field("plain", description="plain text or JSON lines.")
    audit_log_json: bool = Field(
        False, description="Also write every audit event as a JSON line to the application log."
    )

    @field_validator("database_url", "admin_database_url", mode="before")
    @classmethod
    def _url(cls, value: Any) -> str:
        example = "expected e.g. postgresql://user:password@host:5432/name or sqlite:///path"
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"is empty; {example}")
        try:
            return normalize_database_url(value)
        except ValueError as exc:
            raise ValueError(f"{exc}; {example}") from None

    @field_validator("rehearsal_database_url", mode="before")
    @classmethod
    def _optional_url(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return cls._url(value)

    @field_validator("environment", mode="before")
    @classmethod
    def _environment(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("lock_timeout", "statement_timeout", "backup_lock_wait_timeout")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not _DURATION.match(value):
            raise ValueError("expected a PostgreSQL duration such as 0, 500ms, 10s or 2min")
        return value.replace(" ", "")

    @field_validator("lock_retries")
    @classmethod
    def _lock_retries(cls, value: str) -> str:
        schedule.parse(value)
        return value.strip()

    @field_validator("lint_excluded_rules")
    @classmethod
    def _lint_rules(cls, value: str) -> str:
        rules = [r.strip() for r in value.split(",") if r.strip()]
        for rule in rules:
            if not re.fullmatch(r"[a-z][a-z0-9-]{1,80}", rule):
                raise ValueError(f"{rule[:40]!r} is not a squawk rule name (e.g. ban-drop-column)")
        return ",".join(rules)

    @field_validator("lint_pg_version", mode="before")
    @classmethod
    def _lint_pg_version(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not re.fullmatch(r"\d{1,2}(\.\d{1,3})?", str(value).strip()):
            raise ValueError("is not a PostgreSQL version such as 15 or 15.4")
        return str(value).strip()

    @field_validator("backup_before_migrate", "require_rehearsal", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _secret_key_strength(self) -> Settings:
        if self.environment is Environment.DEVELOPMENT and self.secret_key is None:
            return self
        if self.secret_key is None:
            raise ValueError(
                f"SECRET_KEY is required when ENVIRONMENT={self.environment.value}: "
                f"set at least {MIN_SECRET_KEY_LENGTH} random characters "
                "(python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        if weak_secret_reason(self.secret_key) and self.environment is not Environment.DEVELOPMENT:
            raise ValueError(f"SECRET_KEY {weak_secret_reason(self.secret_key)}")
        return self

    # Derived values.

    @property
    def is_production(self) -> bool:
        return self.environment is Environment.PRODUCTION

    @property
    def backups_gate_migrations(self) -> bool:
        if self.backup_before_migrate is None:
            return self.is_production
        return self.backup_before_migrate

    @property
    def rehearsal_required(self) -> bool:
        if self.require_rehearsal is None:
            return self.is_production
        return self.require_rehearsal

    @property
    def cache_dir(self) -> Path:
        """What the panel keeps to start fast (the revision catalog), under VAR_DIR."""
        return self.var_dir / "cache"

    @property
    def target_url_masked(self) -> str:
        return mask_url(self.database_url)

    @property
    def store_url_masked(self) -> str:
        return mask_url(self.admin_database_url)

    def to_env(self) -> dict[str, str]:
        """These settings as environment variables, for a child process to read back."""
        env: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, StrEnum):
                text = value.value
            else:
                text = str(value)
            env[name.upper()] = text
        return env

    @cached_property
    def secret(self) -> bytes:
        """The secret key; in development a random one kept in VAR_DIR/secret-key."""
        if self.secret_key is not None:
            return self.secret_key.encode()
        path = self.var_dir / "secret-key"
        if path.is_file():
            return path.read_bytes().strip()
        files.private_dir(path.parent)
        key = secrets.token_urlsafe(48).encode()
        files.write_private(path, key)
        return key


def weak_secret_reason(key: str) -> str | None:
    """Why a secret key is too weak to protect a shared deployment, or None."""
    make = "(python -c 'import secrets; print(secrets.token_urlsafe(48))')"
    if key.strip().lower() in _KNOWN_WEAK_KEYS:
        return f"is a well-known default; set a random value {make}"
    if len(key) < MIN_SECRET_KEY_LENGTH:
        return f"is too short: use at least {MIN_SECRET_KEY_LENGTH} random characters {make}"
    if _PLACEHOLDER_WORDS.search(key.lower()):
        return f"looks like a placeholder from an example; set a random value {make}"
    bits = secrets_entropy.estimate_bits(key)
    if bits < MIN_SECRET_KEY_BITS:
        return (
            f"is not random enough (about {bits:.0f} bits, at least {MIN_SECRET_KEY_BITS} "
            f"needed: sequences and repeats count little); set a random value {make}"
        )
    return None


def _env_name(loc: tuple[int | str, ...]) -> str:
    return str(loc[0]).upper()


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; a bad value raises ConfigError naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
        loc = error.get("loc", ())
        if not loc:
            raise ConfigError(message) from None
        name = _env_name(loc)
        if message.startswith("Input should be"):
            message = "expected " + message.removeprefix("Input should be ").strip()
        raise ConfigError(f"{name} {message}") from None
