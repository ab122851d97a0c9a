"""One rule for "declared thread-safe": every helper, the checker, the server and get_stats agree.

The rule (docs/api.md): the nearest class of the MRO that sets ``__thread_safe__`` in its own body
decides, only the bool True declares, and ThreadSafeAdapter's own attribute does not count.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _checking import no_global_checking
from snakepit_bridge import _native, base_adapter_threaded, declaration
from snakepit_bridge import thread_safety_checker as tsc
from snakepit_bridge.base_adapter import BaseAdapter
from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter
from snakepit_bridge.declaration import Declaration


class Undeclared(ThreadSafeAdapter):
    pass


class Declared(ThreadSafeAdapter):
    __thread_safe__ = True


class Inherits(Declared):
    pass


class Revokes(Declared):
    __thread_safe__ = False


class InheritsRevoked(Revokes):
    pass


class Truthy(ThreadSafeAdapter):
    __thread_safe__ = 1


class PlainDeclared(BaseAdapter):
    __thread_safe__ = True


class PlainUndeclared(BaseAdapter):
    pass


class MixinAfterTheBase(ThreadSafeAdapter, PlainDeclared):
    """A declaration behind ThreadSafeAdapter in the MRO is not this class's own."""


EXPECTED = {
    Undeclared: (Declaration.UNDECLARED, "Undeclared does not declare thread safety"),
    Declared: (Declaration.DECLARED, None),
    Inherits: (Declaration.DECLARED, None),
    Revokes: (
        Declaration.REFUSED,
        "Revokes declares itself not thread-safe (__thread_safe__ = False)",
    ),
    InheritsRevoked: (
        Declaration.REFUSED,
        "InheritsRevoked declares itself not thread-safe (__thread_safe__ = False, set by Revokes)",
    ),
    Truthy: (Declaration.INVALID, "Truthy sets __thread_safe__ = 1; it must be the bool True"),
    PlainDeclared: (Declaration.DECLARED, None),
    PlainUndeclared: (Declaration.UNDECLARED, "PlainUndeclared does not declare thread safety"),
    MixinAfterTheBase: (Declaration.UNDECLARED, "MixinAfterTheBase does not declare"),
    ThreadSafeAdapter: (Declaration.UNDECLARED, "ThreadSafeAdapter does not declare"),
}


@pytest.fixture(autouse=True)
def _isolated() -> Iterator[None]:
    with no_global_checking():
        yield


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda c: c.__name__)
def test_every_helper_gives_the_same_answer(cls: type) -> None:
    kind, message = EXPECTED[cls]
    declared = kind is Declaration.DECLARED
    instance = cls()
    for subject in (cls, instance):
        assert _native.declares_thread_safe(subject) is declared
        assert declaration.declaration_of(subject)[0] is kind
        assert base_adapter_threaded.validate_thread_safety(subject) is declared
        assert tsc.validate_adapter_thread_safety(subject) is declared
        problem = declaration.declaration_problem(subject)
        assert (problem is None) is declared
        if message is not None:
            assert problem is not None and message in problem
    if isinstance(instance, ThreadSafeAdapter):
        assert instance.get_stats()["thread_safe"] is declared

    calls = []
    for decorator in (base_adapter_threaded.require_thread_safe, tsc.require_thread_safe_adapter):

        @decorator
        def serve(adapter: object, value: int) -> int:
            calls.append(value)
            return value

        if declared:
            assert serve(instance, 7) == 7
        else:
            with pytest.raises(ValueError) as info:
                serve(instance, 7)
            assert message is not None and message in str(info.value)
    assert calls == ([7, 7] if declared else [])


def test_the_two_require_names_are_one_behaviour() -> None:
    assert tsc.require_thread_safe_adapter is base_adapter_threaded.require_thread_safe
    assert base_adapter_threaded.require_thread_safe is declaration.require_thread_safe


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda c: c.__name__)
def test_the_checker_lists_exactly_the_undeclared_classes(cls: type) -> None:
    kind, message = EXPECTED[cls]
    with tsc.ThreadSafetyChecker() as checker:
        adapter = cls()
        adapter.observed = 1  # BaseAdapter subclasses without slots are not observed: fine
    undeclared = checker.get_report()["undeclared_adapters"]
    if not isinstance(adapter, ThreadSafeAdapter):
        assert undeclared == {}
    elif kind is Declaration.DECLARED:
        assert cls.__name__ not in undeclared
    else:
        assert message is not None and message in undeclared[cls.__name__]


def test_an_instance_attribute_is_not_a_declaration() -> None:
    adapter = Undeclared()
    adapter.__thread_safe__ = True
    assert not base_adapter_threaded.validate_thread_safety(adapter)
    assert declaration.declaration_problem(adapter) is not None
    assert adapter.get_stats()["thread_safe"] is False


def test_strict_global_checker_raises_instead_of_false() -> None:
    tsc.enable_checking(strict_mode=True)
    with pytest.raises(ValueError, match="Truthy sets __thread_safe__ = 1"):
        tsc.validate_adapter_thread_safety(Truthy)
    assert tsc.validate_adapter_thread_safety(Inherits)
