"""The ``tool`` decorator, the tool registry of BaseAdapter and the one tool model (ToolSpec)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from _threads import run_threads
from snakepit_bridge import thread_safety_checker as tsc
from snakepit_bridge.base_adapter import (
    BaseAdapter,
    ParameterSpec,
    ToolMetadata,
    ToolSpec,
    UnknownToolError,
    tool,
)
from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter, thread_safe_method
from snakepit_bridge.base_adapter_threaded import tool as threaded_tool


class Plain(BaseAdapter):
    """A plain (not thread-safe) adapter with every kind of tool and non-tool."""

    @tool(description="Add two numbers")
    def add(self, a: int, b: int = 2) -> int:
        return a + b

    @tool
    def echo(self, text: str, *args: object, repeat: int | None = None, **extra: object) -> str:
        """Echo the text back."""
        return text * (repeat or 1)

    @tool(description="raises inside")
    def broken(self, value: int) -> int:
        raise TypeError(f"inner failure with {value}")

    @staticmethod
    @tool(description="static tool")
    def version(prefix: str = "v") -> str:
        return prefix + "1"

    @classmethod
    @tool(description="class tool")
    def kind(cls) -> str:
        return cls.__name__

    def helper(self) -> str:  # public but not declared
        return "helper"

    def _private(self) -> str:
        return "private"


class Threaded(ThreadSafeAdapter):
    __thread_safe__ = True

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    @thread_safe_method
    @tool(description="inner tool order")
    def inner(self, x: list[float]) -> int:
        with self.acquire_lock():
            self.calls += 1
        return len(x)

    @tool(description="outer tool order")
    @thread_safe_method
    def outer(self, y: dict[str, int] | None = None) -> str:
        return "outer"

    @thread_safe_method
    def tracked_not_tool(self) -> None:
        return None

    @thread_safe_method
    @tool(description="takes a parameter called tool_name")
    def named(self, tool_name: str) -> str:
        return tool_name


class NoInit(ThreadSafeAdapter):
    __thread_safe__ = True

    def __init__(self) -> None:  # forgets super().__init__(): the registry must not care
        pass

    @thread_safe_method
    @tool
    def hello(self) -> str:
        return "hello"


# -- tool() ----------------------------------------------------------------------------------


def test_tool_factory_returns_the_same_function_with_metadata() -> None:
    def f(self: object) -> None:
        """Docstring."""

    decorated = tool(description="d", supports_streaming=True, required_variables=["a", "b"])(f)
    assert decorated is f
    assert f._tool_metadata == ToolMetadata(  # type: ignore[attr-defined]
        description="d", supports_streaming=True, parameters=[], required_variables=["a", "b"]
    )


def test_bare_tool_works_and_uses_the_docstring() -> None:
    def f(self: object) -> None:
        """Says hello."""

    assert tool(f) is f
    assert f._tool_metadata.description == "Says hello."  # type: ignore[attr-defined]
    assert f._tool_metadata.supports_streaming is False  # type: ignore[attr-defined]


def test_tool_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError, match="single string"):
        tool(required_variables="ab")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="description must be a str"):
        tool(description=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="str names"):
        tool(required_variables=[1])  # type: ignore[list-item]


@pytest.mark.parametrize("called", [False, True], ids=["bare", "called"])
def test_tool_above_classmethod_and_staticmethod_declares_them(called: bool) -> None:
    declare = tool(description="d") if called else tool

    class Both(BaseAdapter):
        @declare
        @classmethod
        def kind(cls, suffix: str = "") -> str:
            """The class name."""
            return cls.__name__ + suffix

        @declare
        @staticmethod
        def version(prefix: str = "v") -> str:
            """The version."""
            return prefix + "1"

    adapter = Both()
    specs = {spec.name: spec for spec in adapter.get_tools()}
    assert [p.name for p in specs["kind"].parameters] == ["suffix"]
    assert [p.name for p in specs["version"].parameters] == ["prefix"]
    assert specs["kind"].description == ("d" if called else "The class name.")
    assert adapter.call_tool("kind", suffix="!") == "Both!"
    assert adapter.call_tool("version") == "v1"


@pytest.mark.parametrize("called", [False, True], ids=["bare", "called"])
def test_tool_above_a_property_says_what_is_wrong(called: bool) -> None:
    declare = tool(description="d") if called else tool
    with pytest.raises(TypeError, match=r"tool\(\) cannot declare a property") as info:

        class WithProperty(BaseAdapter):
            @declare
            @property
            def size(self) -> int:
                return 1

    assert "make it a method" in str(info.value)
    assert "description must be a str" not in str(info.value)


def test_tool_refuses_what_cannot_be_called() -> None:
    with pytest.raises(TypeError, match=r"tool\(\) must decorate a function or method .*, not int"):
        tool(description="d")(3)  # type: ignore[type-var]


def test_threaded_module_reexports_the_same_tool() -> None:
    assert threaded_tool is tool


def test_base_adapter_keeps_the_constraints_of_the_native_core() -> None:
    assert BaseAdapter.__slots__ == ()
    assert type(BaseAdapter) is type
    assert ThreadSafeAdapter.__mro__ == (ThreadSafeAdapter, BaseAdapter, object)


# -- discovery and schemas -----------------------------------------------------------------


def test_discovery_lists_declared_tools_only_sorted() -> None:
    assert [t.name for t in Plain().get_tools()] == ["add", "broken", "echo", "kind", "version"]
    assert [t.name for t in Threaded().get_tools()] == ["inner", "named", "outer"]


def test_schema_from_signature() -> None:
    specs = {t.name: t for t in Plain().get_tools()}
    add = specs["add"]
    assert add.description == "Add two numbers"
    assert add.parameters == (
        ParameterSpec("a", "int", True, None, "positional_or_keyword"),
        ParameterSpec("b", "int", False, 2, "positional_or_keyword"),
    )
    echo = specs["echo"]
    assert echo.description == "Echo the text back."
    kinds = {p.name: (p.type, p.required, p.kind) for p in echo.parameters}
    assert kinds == {
        "text": ("str", True, "positional_or_keyword"),
        "args": ("object", False, "var_positional"),
        "repeat": ("int", False, "keyword_only"),
        "extra": ("object", False, "var_keyword"),
    }
    assert [p.name for p in specs["version"].parameters] == ["prefix"]  # static: nothing dropped
    assert specs["kind"].parameters == ()  # classmethod: cls dropped
    assert add.adapter_class == "Plain" and add.module == __name__


def test_schema_through_thread_safe_method_in_both_orders() -> None:
    specs = {t.name: t for t in Threaded().get_tools()}
    assert specs["inner"].description == "inner tool order"
    assert specs["inner"].parameters == (ParameterSpec("x", "list", True),)
    assert specs["outer"].description == "outer tool order"
    assert specs["outer"].parameters[0].type == "dict"
    assert specs["outer"].parameters[0].required is False


def test_to_dict_is_json_friendly_and_fresh() -> None:
    class Defaults(BaseAdapter):
        @tool
        def f(self, when: object = object(), n: int = 3) -> None:
            """f"""

    spec = Defaults().get_tools()[0]
    data = spec.to_dict()
    assert data["parameters"][0]["default"].startswith("<object object")
    assert data["parameters"][1]["default"] == 3
    data["parameters"].clear()
    assert len(spec.to_dict()["parameters"]) == 2


def test_tool_spec_from_mapping_round_trips_and_reads_upstream_entries() -> None:
    for spec in Plain().get_tools():
        assert ToolSpec.from_mapping(spec) is spec
        assert ToolSpec.from_mapping(spec.to_dict()) == spec
    upstream = SimpleNamespace(  # a registration object, as upstream's protobuf messages read
        name="scale",
        description="Scale values",
        supports_streaming=True,
        parameters=[
            SimpleNamespace(name="values", type="list", required=True, validation_json=""),
            SimpleNamespace(name="factor", type="float", required=False,
                            validation_json='{"default": 2.5}'),
            {"name": "rest", "type": "any", "required": True, "kind": "var_keyword"},
        ],
        metadata={"adapter_class": "Scaler", "module": "pkg.mod", "required_variables": "a,b"},
    )  # fmt: skip
    spec = ToolSpec.from_mapping(upstream)
    assert spec == ToolSpec(
        name="scale",
        description="Scale values",
        supports_streaming=True,
        parameters=(
            ParameterSpec("values", "list", True),
            ParameterSpec("factor", "float", False, 2.5),
            ParameterSpec("rest", "any", False, None, "var_keyword"),  # never required
        ),
        required_variables=("a", "b"),
        adapter_class="Scaler",
        module="pkg.mod",
    )
    assert [p.name for p in spec.required_parameters] == ["values"]
    assert spec.keyword_names == {"values", "factor"} and spec.accepts_any_keyword
    assert ToolSpec.from_mapping({"name": "bare"}) == ToolSpec("bare", "", False, (), (), "", "")
    with pytest.raises(TypeError, match="name"):
        ToolSpec.from_mapping({"description": "no name"})
    with pytest.raises(TypeError, match="name"):
        ToolSpec.from_mapping(object())


def test_parameter_defaults_are_shown_json_safe() -> None:
    class Odd(BaseAdapter):
        @tool
        def f(self, limits: tuple = (1, float("inf")), tags: frozenset = frozenset("ba")) -> None:
            """f"""

    (spec,) = Odd().get_tools()
    limits, tags = (p.to_dict()["default"] for p in spec.parameters)
    assert limits == [1, "inf"] and tags == ["a", "b"]


def test_registry_is_cached_per_class_not_per_instance() -> None:
    first, second = Threaded(), Threaded()
    specs = first.get_tools()
    assert all(a is b for a, b in zip(specs, second.get_tools(), strict=True))
    assert isinstance(specs[0], ToolSpec)
    assert "session_context" not in vars(first)  # no per-instance state was created
    specs.clear()  # the list is a copy
    assert len(first.get_tools()) == 3


def test_adapter_that_skips_super_init_still_works() -> None:
    adapter = NoInit()
    assert [t.name for t in adapter.get_tools()] == ["hello"]
    assert adapter.call_tool("hello") == "hello"


def test_subclass_inherits_tools_and_can_hide_one_by_overriding() -> None:
    class Child(Plain):
        def add(self, a: int, b: int = 2) -> int:  # overridden without @tool
            return 0

        @tool(description="new")
        def extra(self) -> str:
            return "extra"

    names = [t.name for t in Child().get_tools()]
    assert "add" not in names and "extra" in names and "echo" in names
    assert Plain().get_tools()[0].name == "add"  # parent cache unaffected


def test_concurrent_first_discovery_agrees() -> None:
    class Fresh(ThreadSafeAdapter):
        __thread_safe__ = True

        @thread_safe_method
        @tool
        def a(self) -> None:
            """a"""

        @tool
        def b(self) -> None:
            """b"""

    adapter = Fresh()
    results = run_threads(lambda _i: [t.name for t in adapter.get_tools()], 16)
    assert results == [["a", "b"]] * 16


# -- dispatch ------------------------------------------------------------------------------


def test_call_tool_dispatches_declared_tools() -> None:
    plain = Plain()
    assert plain.call_tool("add", a=1) == 3
    assert plain.call_tool("echo", text="ab", repeat=2) == "abab"
    assert plain.call_tool("version", prefix="V") == "V1"
    assert plain.call_tool("kind") == "Plain"
    threaded = Threaded()
    assert threaded.call_tool("inner", x=[1.0, 2.0]) == 2
    assert threaded.call_tool("named", tool_name="x") == "x"
    assert threaded.get_stats()["tracker"]["total_requests"] == 2


@pytest.mark.parametrize("adapter_class", [Plain, Threaded])
def test_call_tool_runs_the_declared_tool_not_an_instance_attribute_of_that_name(
    adapter_class: type,
) -> None:
    adapter = adapter_class()
    calls: list[str] = []
    names = ["add", "version", "kind"] if adapter_class is Plain else ["inner", "outer"]
    for name in names:
        # An instance attribute shadows the method for getattr(); call_tool must not run it.
        adapter.__dict__[name] = lambda *args, _n=name, **kwargs: calls.append(_n)
    if adapter_class is Plain:
        assert adapter.call_tool("add", a=1) == 3
        assert adapter.call_tool("version", prefix="V") == "V1"
        assert adapter.call_tool("kind") == "Plain"
    else:
        assert adapter.call_tool("inner", x=[1.0]) == 1
        assert adapter.call_tool("outer") == "outer"
        assert adapter.get_stats()["tracker"]["total_requests"] == 2  # still tracked
    assert calls == []


def test_call_tool_binds_each_kind_of_tool_like_attribute_lookup() -> None:
    class Sub(Plain):
        pass

    sub = Sub()
    assert sub.call_tool("kind") == "Sub"  # classmethod: bound to the instance's class
    assert sub.call_tool("version") == "v1"  # staticmethod: no self
    assert sub.call_tool("add", a=2, b=5) == 7
    threaded = Threaded()
    assert threaded.call_tool("named", tool_name="t") == "t"  # self first, then keywords
    assert threaded.calls == 0
    threaded.call_tool("inner", x=[])
    assert threaded.calls == 1


def test_a_callable_object_declared_as_a_tool_is_called_without_self() -> None:
    class Greeter:
        def __call__(self, name: str = "you") -> str:
            return f"hello {name}"

    class WithCallable(BaseAdapter):
        greet = tool(description="greets")(Greeter())

    adapter = WithCallable()
    assert [p.name for p in adapter.get_tools()[0].parameters] == ["name"]
    assert adapter.call_tool("greet") == "hello you"
    assert adapter.call_tool("greet", name="me") == "hello me"


@pytest.mark.parametrize(
    "name",
    [
        "nope",
        "helper",
        "_private",
        "acquire_lock",
        "get_stats",
        "set_thread_local",
        "call_tool",
        "tracked_not_tool",
        "__init__",
    ],
)
def test_call_tool_refuses_anything_not_declared(name: str) -> None:
    adapter = (
        Threaded()
        if name in ("acquire_lock", "get_stats", "set_thread_local", "tracked_not_tool")
        else Plain()
    )
    with pytest.raises(UnknownToolError) as info:
        adapter.call_tool(name)
    message = str(info.value)
    assert repr(name) in message and "available tools:" in message
    assert isinstance(info.value, AttributeError)
    assert info.value.available == tuple(t.name for t in adapter.get_tools())


def test_bad_arguments_give_a_type_error_naming_the_tool() -> None:
    plain = Plain()
    with pytest.raises(TypeError, match="'add'.*missing a required argument: 'a'"):
        plain.call_tool("add")
    with pytest.raises(TypeError, match="'add'.*unexpected keyword argument 'c'"):
        plain.call_tool("add", a=1, c=3)


def test_type_error_inside_a_tool_is_not_mistaken_for_bad_arguments() -> None:
    with pytest.raises(TypeError) as info:
        Plain().call_tool("broken", value=7)
    assert str(info.value) == "inner failure with 7"


def test_execute_tool_checks_arguments_and_sets_the_context() -> None:
    class Ctx:
        session_id = "s-1"

    adapter = Threaded()
    assert adapter.session_id is None
    assert adapter.execute_tool("inner", {"x": [1, 2, 3]}, Ctx()) == 3
    assert adapter.session_id == "s-1"
    assert adapter.execute_tool("outer", None) == "outer"
    with pytest.raises(TypeError, match="must be a mapping"):
        adapter.execute_tool("inner", [1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be str"):
        adapter.execute_tool("inner", {1: 2})  # type: ignore[dict-item]
    with pytest.raises(UnknownToolError):
        adapter.execute_tool("acquire_lock", {})


def test_session_context_on_plain_and_threaded_adapters() -> None:
    class Ctx:
        def __init__(self, sid: str) -> None:
            self.session_id = sid

    for adapter in (Plain(), Threaded(), NoInit()):
        adapter.set_session_context(Ctx("abc"))
        assert adapter.session_id == "abc"
        assert adapter.session_context.session_id == "abc"  # type: ignore[attr-defined]

    class Slotted(BaseAdapter):
        __slots__ = ()

    assert Slotted().session_id is None
    slotted = Slotted()  # no __dict__ needed: the context is not stored on the instance
    slotted.set_session_context(Ctx("x"))
    assert slotted.session_id == "x"


def test_session_context_is_not_an_observed_adapter_write() -> None:
    adapter = Threaded()
    with tsc.ThreadSafetyChecker(strict_mode=True) as checker:
        # Set from many threads without a lock: bookkeeping of the bridge, never a race.
        run_threads(lambda i: adapter.execute_tool("outer", {}, context=object()), 8)
    report = checker.get_report()
    assert report["warnings"] == []
    assert report["observed_writes"] == 0


def test_many_threads_dispatch_through_the_registry() -> None:
    adapter = Threaded()
    lock = threading.Lock()
    oracle = [0]

    def worker(_i: int) -> None:
        for _ in range(200):
            adapter.call_tool("inner", x=[0.0])
            with lock:
                oracle[0] += 1

    run_threads(worker, 16)
    assert adapter.calls == oracle[0] == 16 * 200
    assert adapter.get_stats()["tracker"]["total_requests"] == 16 * 200


def test_discovery_ignores_class_attributes_whose_lookup_fails() -> None:
    class Exploding:
        def __getattr__(self, name: str) -> object:
            raise RuntimeError(f"no {name}")

    class Odd(BaseAdapter):
        weird = Exploding()

        @tool
        def ok(self) -> str:
            """ok"""
            return "ok"

    assert [t.name for t in Odd().get_tools()] == ["ok"]
    assert Odd().call_tool("ok") == "ok"


def test_argument_check_handles_every_parameter_kind() -> None:
    class Kinds(BaseAdapter):
        @tool
        def positional_only(self, a: int, /) -> int:
            """cannot be called by keyword"""
            return a

        @tool
        def keywords(self, a: int, *, b: int = 0, **rest: int) -> int:
            """open keywords"""
            return a + b + sum(rest.values())

    adapter = Kinds()
    with pytest.raises(TypeError, match="'positional_only'"):
        adapter.call_tool("positional_only", a=1)
    assert adapter.call_tool("keywords", a=1, b=2, c=3, d=4) == 10
    with pytest.raises(TypeError, match="'keywords'.*missing a required argument: 'a'"):
        adapter.call_tool("keywords", b=2)
    assert adapter.execute_tool("keywords", {"a": 5}) == 5
