"""The static pitfall scan: :func:`check_common_pitfalls` reads an adapter class, not its runs.

It looks for what the user guides warn about: a class that does not declare itself thread-safe,
read-modify-writes of ``self.x`` outside any lock (from the class's source, with :mod:`ast`),
tools of a ThreadSafeAdapter that are not tracked, unlocked public containers on adapters that
are not ThreadSafeAdapters, and imported thread-unsafe libraries.
"""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
from collections.abc import Iterable, Iterator
from typing import Any

from snakepit_bridge._native import ThreadSafeAdapter, thread_safe_method
from snakepit_bridge.base_adapter import BaseAdapter, _class_attributes, _find_metadata
from snakepit_bridge.checker.libraries import library_message, unsafe_libraries_in
from snakepit_bridge.checker.locks import is_lock
from snakepit_bridge.declaration import declaration_problem

__all__ = ["check_common_pitfalls"]


def check_common_pitfalls(
    adapter: object, *, imported_modules: Iterable[str] | None = None
) -> list[str]:
    """Static review of an adapter instance; one readable finding per problem.

    * the class does not declare itself thread-safe (see :mod:`snakepit_bridge.declaration`);
    * a method other than ``__init__`` does ``self.x op= ...`` (read-modify-write) outside a
      ``with ...lock...:`` block or an ``.acquire()``/``.release()`` section (needs source);
    * a tool of a ThreadSafeAdapter is not a ``thread_safe_method`` (its calls are not tracked);
    * an adapter that is not a ThreadSafeAdapter holds public lists, dicts or sets and no lock;
    * a thread-unsafe library is imported (``imported_modules`` defaults to ``sys.modules``).
    """
    cls = type(adapter)
    findings: list[str] = []
    problem = declaration_problem(cls)
    if problem is not None:
        findings.append(problem)
    findings.extend(_unlocked_read_modify_writes(cls))
    if isinstance(adapter, ThreadSafeAdapter):
        for name, raw in _own_tools(cls):
            if not isinstance(raw, thread_safe_method):
                findings.append(
                    f"Tool {cls.__name__}.{name} is not decorated with @thread_safe_method, so "
                    "its calls are not tracked."
                )
    else:
        namespace = getattr(adapter, "__dict__", {})
        containers = [
            k
            for k, v in namespace.items()
            if not k.startswith("_") and isinstance(v, (list, dict, set, bytearray))
        ]
        has_lock = any(is_lock(v) for v in namespace.values())
        if containers and not has_lock:
            findings.append(
                f"{cls.__name__} holds shared mutable containers ({', '.join(containers)}) and no "
                "lock: derive from ThreadSafeAdapter and update them under acquire_lock()."
            )
    names = set(sys.modules) if imported_modules is None else set(imported_modules)
    findings.extend(library_message(lib) for lib in unsafe_libraries_in(names))
    return findings


def _own_tools(cls: type) -> Iterator[tuple[str, Any]]:
    """The declared tools of ``cls`` (the base classes declare none)."""
    return ((name, raw) for name, raw in _class_attributes(cls) if _find_metadata(raw) is not None)


def _unlocked_read_modify_writes(cls: type) -> list[str]:
    findings: list[str] = []
    for klass in cls.__mro__:
        if klass in (ThreadSafeAdapter, BaseAdapter, object):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
            _, first_line = inspect.getsourcelines(klass)
        except (OSError, TypeError):
            continue  # defined in a REPL or exec'd string: nothing to read
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        class_def = tree.body[0] if tree.body else None
        if not isinstance(class_def, ast.ClassDef):
            continue
        for node in class_def.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name not in (
                "__init__",
                "__new__",
                "__init_subclass__",
            ):
                for target, lineno in _unguarded_aug_assigns(node.body, guarded=False):
                    findings.append(
                        f"{klass.__name__}.{node.name} (line {first_line + lineno - 1}): "
                        f"`self.{target} op= ...` reads and writes shared state outside any "
                        "lock; do it inside `with self.acquire_lock():`."
                    )
    return findings


def _mentions_lock(node: ast.AST) -> bool:
    return "lock" in ast.unparse(node).lower()


def _unguarded_aug_assigns(body: list[ast.stmt], guarded: bool) -> Iterator[tuple[str, int]]:
    for stmt in body:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            func = stmt.value.func
            if isinstance(func, ast.Attribute) and func.attr == "acquire":
                guarded = True  # the rest of this block runs with the lock held
            elif isinstance(func, ast.Attribute) and func.attr == "release":
                guarded = False
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if (
            not guarded
            and isinstance(stmt, ast.AugAssign)
            and isinstance(stmt.target, ast.Attribute)
            and isinstance(stmt.target.value, ast.Name)
            and stmt.target.value.id == "self"
        ):
            yield stmt.target.attr, stmt.lineno
        inner_guarded = guarded
        if isinstance(stmt, (ast.With, ast.AsyncWith)):
            inner_guarded = guarded or any(_mentions_lock(i.context_expr) for i in stmt.items)
        if isinstance(stmt, ast.If) and isinstance(stmt.test, ast.Call):
            func = stmt.test.func
            if isinstance(func, ast.Attribute) and func.attr == "acquire":
                yield from _unguarded_aug_assigns(stmt.body, True)
                yield from _unguarded_aug_assigns(stmt.orelse, guarded)
                continue
        for field_name in ("body", "orelse", "finalbody", "handlers"):
            children = getattr(stmt, field_name, None)
            if isinstance(children, list):
                stmts = [c for c in children if isinstance(c, ast.stmt)]
                for handler in (c for c in children if isinstance(c, ast.ExceptHandler)):
                    stmts.extend(handler.body)
                yield from _unguarded_aug_assigns(stmts, inner_guarded)
