"""The operations the app's OpenAPI document declares, looked up by method and path.

Answers that must agree with the published document are read from it, so the two cannot drift:
- which requests need a key: `ApiKeyMiddleware` enforces, before the body is read, exactly the security each
  operation declares (required on writes, optional on reads: required too with `protect_reads`);
- which methods a path accepts: the `Allow` header of a 405 (Starlette's names only the first route's);
- which form fields hold one value: one sent twice is refused (`app.multipart`).
Operations left out of the schema are not seen here; their own dependencies still guard them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from starlette.routing import compile_path

Key = Literal["required", "optional"] | None
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


@dataclass(frozen=True)
class Operation:
    method: str
    path: re.Pattern[str]
    key: Key
    single_fields: frozenset[str]  # multipart fields declared as one value (not an array)


def _key(operation: dict[str, Any]) -> Key:
    """`security: [{"APIKeyHeader": []}]` -> required; with a `{}` alternative -> optional; none -> None."""
    security = operation.get("security") or []
    if not security:
        return None
    return "optional" if {} in security else "required"


def _single_fields(document: dict[str, Any], operation: dict[str, Any]) -> frozenset[str]:
    form = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data", {})
    reference = form.get("schema", {}).get("$ref", "")
    body = document.get("components", {}).get("schemas", {}).get(reference.rsplit("/", 1)[-1], {})
    return frozenset(name for name, field in body.get("properties", {}).items() if not _is_array(field))


def _is_array(field: dict[str, Any]) -> bool:
    """An array field, optional ones (`anyOf: [array, ...]`) included."""
    return any(branch.get("type") == "array" for branch in [field, *field.get("anyOf", [])])


def operations(app: Any) -> list[Operation]:
    """Every operation of the FastAPI `app`'s OpenAPI document (built once, then kept in `app.state`)."""
    table: list[Operation] | None = getattr(app.state, "operations", None)
    if table is None:
        document = app.openapi()
        table = [
            Operation(method.upper(), compile_path(path)[0], _key(operation), _single_fields(document, operation))
            for path, item in document.get("paths", {}).items()
            for method, operation in item.items()
            if method in HTTP_METHODS
        ]
        app.state.operations = table
    return table


def find(app: Any, method: str, path: str) -> Operation | None:
    """The operation a request goes to, if the document declares it."""
    return next((op for op in operations(app) if op.method == method and op.path.match(path)), None)


def methods_of(app: Any, path: str) -> set[str]:
    """Methods the document declares on `path`."""
    return {op.method for op in operations(app) if op.path.match(path)}
