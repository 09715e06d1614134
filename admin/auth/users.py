"""User accounts: create, change role, disable, reset and change passwords (all audited)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from admin import audit, files
from admin.auth import passwords
from admin.errors import Conflict, InvalidInput, NotFound
from admin.store.models import Role, User, UserSession, utcnow

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
FIRST_ADMIN = "admin"


def parse_role(value: str) -> Role:
    try:
        return Role(value.strip().lower())
    except ValueError:
        names = ", ".join(r.value for r in Role)
        raise InvalidInput(f"unknown role {value!r}: expected one of {names}") from None


def _check_username(username: str) -> str:
    username = username.strip()
    if not USERNAME.match(username):
        raise InvalidInput(
            "a user name is 1 to 64 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
    return username


def get(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username.strip()))
    if user is None:
        raise NotFound(f"there is no user {username!r}")
    return user


def find(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username.strip()))


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(User)) or 0


def end_sessions(session: Session, user: User, *, keep_session_id: int | None = None) -> int:
    """Sign a user out everywhere at once (but for ``keep_session_id``, the caller's own)."""
    statement = delete(UserSession).where(UserSession.user_id == user.id)
    if keep_session_id is not None:
        statement = statement.where(UserSession.id != keep_session_id)
    result = session.execute(statement)
    return int(getattr(result, "rowcount", 0) or 0)


def create(
    session: Session,
    actor: audit.Actor,
    username: str,
    role: Role,
    password: str,
    *,
    must_change_password: bool = True,
) -> User:
    """A new user; every password, a random one too, passes the policy (``policy.check``)."""
    username = _check_username(username)
    passwords.validate_new(password, username)
    if find(session, username) is not None:
        raise Conflict(f"a user named {username!r} exists already")
    now = utcnow()
    user = User(
        username=username,
        password_hash=passwords.hash_password(password),
        role=role.value,
        disabled=False,
        must_change_password=must_change_password,
        created_at=now,
        updated_at=now,
        password_changed_at=now,
    )
    session.add(user)
    session.flush()
    audit.record(session, audit.UserCreated(username=username, role=role.value), actor)
    return user


def set_role(session: Session, actor: audit.Actor, username: str, role: Role) -> User:
    user = get(session, username)
    old = user.role
    if old == role.value:
        return user
    if old == Role.ADMIN.value:
        _keep_one_admin(session, user)
    user.role = role.value
    audit.record(
        session, audit.RoleChanged(username=user.username, old_role=old, new_role=role.value), actor
    )
    return user


def _keep_one_admin(session: Session, user: User) -> None:
    others = session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.role == Role.ADMIN.value, User.disabled.is_(False), User.id != user.id)
    )
    if not others:
        raise Conflict(f"{user.username!r} is the last active admin; make another admin first")


def set_disabled(session: Session, actor: audit.Actor, username: str, disabled: bool) -> User:
    user = get(session, username)
    if user.disabled == disabled:
        return user
    if disabled:
        if user.role == Role.ADMIN.value:
            _keep_one_admin(session, user)
        end_sessions(session, user)
        event: audit.Event = audit.UserDisabled(username=user.username)
    else:
        event = audit.UserEnabled(username=user.username)
    user.disabled = disabled
    audit.record(session, event, actor)
    return user


def reset_password(
    session: Session, actor: audit.Actor, username: str, password: str | None = None
) -> tuple[User, str]:
    """Give a user a new password they must change at next sign-in; returns it."""
    user = get(session, username)
    new = password or passwords.random_password()
    passwords.validate_new(new, user.username)
    user.password_hash = passwords.hash_password(new)
    user.must_change_password = True
    user.password_changed_at = utcnow()
    end_sessions(session, user)
    audit.record(session, audit.PasswordReset(username=user.username), actor)
    return user, new


def change_own_password(
    session: Session,
    actor: audit.Actor,
    user: User,
    current: str,
    new: str,
    *,
    keep_session_id: int | None = None,
) -> None:
    """Change one's own password; every other session of the user ends."""
    ok, _ = passwords.verify(current, user.password_hash)
    if not ok:
        raise InvalidInput("the current password is not correct")
    if new == current:
        raise InvalidInput("the new password must differ from the current one")
    passwords.validate_new(new, user.username)
    user.password_hash = passwords.hash_password(new)
    user.must_change_password = False
    user.password_changed_at = utcnow()
    end_sessions(session, user, keep_session_id=keep_session_id)
    audit.record(session, audit.PasswordChanged(username=user.username), actor)


@dataclass(frozen=True)
class InitialAdmin:
    username: str
    password: str


def ensure_first_admin(session: Session, actor: audit.Actor) -> InitialAdmin | None:
    """When the store has no users, create ``admin`` with a random password."""
    if count(session) > 0:
        return None
    password = passwords.random_password()
    create(session, actor, FIRST_ADMIN, Role.ADMIN, password)
    return InitialAdmin(FIRST_ADMIN, password)


INITIAL_PASSWORD_FILE = "initial-admin-password"


def write_initial_password(var_dir: Path, initial: InitialAdmin) -> Path:
    """Keep the first admin's password where only this OS user can read it (0600 in a
    0700 directory, whatever the umask)."""
    files.private_dir(var_dir)
    path = var_dir / INITIAL_PASSWORD_FILE
    path.unlink(missing_ok=True)
    files.write_private(path, f"{initial.username}\n{initial.password}\n".encode())
    return path


def forget_initial_password(var_dir: Path, username: str) -> bool:
    """Delete the first admin's password file once ``username`` (its user) chose their own."""
    path = var_dir / INITIAL_PASSWORD_FILE
    try:
        named = path.read_text().split("\n", 1)[0]
    except OSError:
        return False
    if named != username:
        return False
    path.unlink(missing_ok=True)
    return True
