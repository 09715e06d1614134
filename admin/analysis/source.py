"""What a revision file says about its risks, read from its source (``ast``), never run.

The web process must not import revision code, so the file is parsed, not imported: the
``upgrade()`` and ``downgrade()`` functions are walked for ``op.*`` calls (and calls on a
``batch_alter_table`` block's name), ``autocommit_block``, ``op.get_bind()``, and a
``raise`` that the downgrade reaches whatever happens.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from admin.analysis.badges import Badge, Kind, one_line

# op.* calls that change nothing in the schema.
_NOT_SCHEMA = frozenset(
    {"execute", "bulk_insert", "get_bind", "get_context", "f", "inline_literal", "run_async"}
)
_DATA_WORDS = ("UPDATE", "DELETE", "INSERT", "MERGE", "COPY")
# Raw SQL that changes the schema (for "its downgrade does nothing while its upgrade changes
# the schema").
_DDL_WORDS = ("CREATE", "ALTER", "DROP", "COMMENT")
_LENGTH_TYPES = frozenset({"String", "VARCHAR", "CHAR", "Unicode", "NVARCHAR", "Text"})
_WIDTH = {"SmallInteger": 2, "Integer": 4, "BigInteger": 8}


@dataclass(frozen=True)
class SourceFacts:
    """Badges of one direction's function, and whether it changes the schema at all."""

    badges: tuple[Badge, ...]
    # What the rendered SQL cannot show (a type narrowed, a live connection used): kept
    # even when the SQL was read; ``badges`` stand in for the SQL only when it was not.
    always: tuple[Badge, ...]
    changes_schema: bool
    empty: bool


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Call) and node.args:  # op.f("name")
        return _name(node.args[0])
    if isinstance(node, ast.Name):
        return node.id
    return None


def _arg(call: ast.Call, index: int, keyword: str) -> ast.AST | None:
    for kw in call.keywords:
        if kw.arg == keyword:
            return kw.value
    return call.args[index] if len(call.args) > index else None


def _named(call: ast.Call, index: int, keyword: str) -> str:
    """The name an argument gives (a string, ``op.f("x")``, a variable's name), or "?"."""
    node = _arg(call, index, keyword)
    return (_name(node) if node is not None else None) or "?"


def _table_column(call: ast.Call, batch_table: str | None) -> tuple[str, str]:
    if batch_table is not None:
        return batch_table, _named(call, 0, "column_name")
    return _named(call, 0, "table_name"), _named(call, 1, "column_name")


def _type_size(node: ast.AST | None) -> tuple[str, int] | None:
    """``sa.String(32)`` -> ("String", 32); ``sa.Integer()`` -> ("int", 4)."""
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name in _WIDTH:
        return "int", _WIDTH[name]
    if name in _LENGTH_TYPES:
        size = _arg(node, 0, "length")
        if isinstance(size, ast.Constant) and isinstance(size.value, int):
            return "text", size.value
        return "text", 1 << 30
    return None


def _source_text(node: ast.AST) -> str:
    try:
        return ast.unparse(node)
    except Exception:  # pragma: no cover - unparse handles every parsed node
        return "?"


class _Walker(ast.NodeVisitor):
    def __init__(self) -> None:
        self.badges: list[Badge] = []
        self.always: list[Badge] = []
        self.batch_tables: dict[str, str] = {}
        self.schema_calls = 0

    def visit_With(self, node: ast.With) -> None:
        for item in node.items:
            call = item.context_expr
            if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Attribute):
                continue
            if call.func.attr == "autocommit_block":
                self.badges.append(
                    Badge(
                        Kind.NON_TRANSACTIONAL,
                        "runs statements in an autocommit_block: they commit one by one, "
                        "a failure leaves the earlier ones applied",
                    )
                )
            elif call.func.attr == "batch_alter_table" and isinstance(item.optional_vars, ast.Name):
                table = _name(call.args[0]) if call.args else None
                self.batch_tables[item.optional_vars.id] = table or "?"
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            owner = func.value.id
            if owner == "op":
                self._op(func.attr, node, None)
            elif owner in self.batch_tables:
                self._op(func.attr, node, self.batch_tables[owner])
        self.generic_visit(node)

    def _op(self, name: str, call: ast.Call, batch_table: str | None) -> None:
        if name not in _NOT_SCHEMA and name != "batch_alter_table":
            self.schema_calls += 1
        if name == "drop_table":
            table = _named(call, 0, "table_name")
            self._drop(f"table {table}", f"drops table {table} and every row in it")
        elif name == "drop_column":
            table, column = _table_column(call, batch_table)
            self._drop(f"{table}.{column}", f"drops column {table}.{column} and its data")
        elif name == "alter_column":
            self._narrowing(call, batch_table)
        elif name == "bulk_insert":
            self.badges.append(Badge(Kind.DATA_MIGRATION, "inserts rows (op.bulk_insert)"))
        elif name == "get_bind":
            self.always.append(
                Badge(
                    Kind.NEEDS_DATABASE,
                    "reads the database while it runs (op.get_bind()): no offline SQL for it",
                )
            )
        elif name == "execute":
            self._execute(call)

    def _drop(self, what: str, reason: str) -> None:
        self.badges.append(Badge(Kind.DESTRUCTIVE, reason, (what,)))

    def _narrowing(self, call: ast.Call, batch_table: str | None) -> None:
        new = _type_size(_arg(call, 99, "type_"))
        old = _type_size(_arg(call, 99, "existing_type"))
        if new is None or old is None or new[0] != old[0] or new[1] >= old[1]:
            return
        table, column = _table_column(call, batch_table)
        was = _source_text(_arg(call, 99, "existing_type") or ast.Constant("?"))
        now = _source_text(_arg(call, 99, "type_") or ast.Constant("?"))
        self.always.append(
            Badge(
                Kind.DESTRUCTIVE,
                f"narrows {table}.{column} from {was} to {now}: longer values fail or are cut",
                (f"{table}.{column}",),
            )
        )

    def _execute(self, call: ast.Call) -> None:
        arg = call.args[0] if call.args else None
        text = _source_text(arg) if arg is not None else ""
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            first = arg.value.lstrip().split(None, 1)[0].upper() if arg.value.strip() else ""
            if first in _DDL_WORDS:
                self.schema_calls += 1
            if first in _DATA_WORDS:
                self.badges.append(
                    Badge(Kind.DATA_MIGRATION, f"changes rows: {one_line(arg.value, 90)}")
                )
        elif any(f".{verb}(" in text for verb in ("update", "delete", "insert")):
            self.badges.append(Badge(Kind.DATA_MIGRATION, f"changes rows: {one_line(text, 90)}"))


def _raises(body: list[ast.stmt]) -> ast.Raise | None:
    """A ``raise`` the function reaches whatever happens (a top-level statement)."""
    for statement in body:
        if isinstance(statement, ast.Raise):
            return statement
        if isinstance(statement, ast.Return):
            return None
    return None


def _is_empty(body: list[ast.stmt]) -> bool:
    for statement in body:
        if isinstance(statement, ast.Pass):
            continue
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
            continue  # a docstring or a bare string
        return False
    return True


def _raise_reason(node: ast.Raise) -> str:
    exc = node.exc
    name = "an error"
    message = ""
    if isinstance(exc, ast.Call):
        func = exc.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", name)
        if exc.args:
            first = exc.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                message = first.value
            elif isinstance(first, ast.JoinedStr):
                message = "".join(str(v.value) for v in first.values if isinstance(v, ast.Constant))
    elif isinstance(exc, ast.Name):
        name = exc.id
    sentence = message.split(". ")[0] if message else ""
    return f"its downgrade raises {name}" + (f": {one_line(sentence, 120)}" if sentence else "")


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    return {
        node.name: node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name in ("upgrade", "downgrade")
    }


@dataclass(frozen=True)
class FileFacts:
    """Both directions of one revision file, as read from its source."""

    upgrade: SourceFacts
    downgrade: SourceFacts
    irreversible: Badge | None


def _facts(function: ast.FunctionDef | None) -> SourceFacts:
    if function is None:
        return SourceFacts((), (), False, True)
    walker = _Walker()
    for statement in function.body:
        walker.visit(statement)
    return SourceFacts(
        tuple(walker.badges),
        tuple(walker.always),
        walker.schema_calls > 0,
        _is_empty(function.body),
    )


def read_file(text: str) -> FileFacts:
    """The risks a revision file's source shows (a file that does not parse shows none)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        empty = SourceFacts((), (), False, True)
        return FileFacts(empty, empty, None)
    functions = _functions(tree)
    up, down = _facts(functions.get("upgrade")), _facts(functions.get("downgrade"))
    irreversible = None
    downgrade = functions.get("downgrade")
    raised = _raises(downgrade.body) if downgrade is not None else None
    if raised is not None:
        irreversible = Badge(Kind.IRREVERSIBLE, _raise_reason(raised), fails=True)
    elif down.empty and up.changes_schema:
        irreversible = Badge(
            Kind.IRREVERSIBLE,
            "its downgrade does nothing while its upgrade changes the schema: a downgrade "
            "leaves the schema as the upgrade made it",
        )
    return FileFacts(up, down, irreversible)
