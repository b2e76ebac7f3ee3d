"""Grading from answers, not verdicts: the kernel records what a checker was given, the grader
re-checks it.

Why: a student's code runs in the same kernel as the checkers, so anything the kernel says about
a verdict ("correct") can be forged by writing to the grade channel. What the kernel records
here is the **answer**: the checker's arguments as plain data and, for an argument that is a
function, every call the checker made to it with its arguments and result. The grader
(:mod:`basam_lite.grade`) decodes that data in its own process and runs the checker again
(:func:`recheck`), its reference computed there; a function argument is replayed from its
recorded calls. A forged record therefore gains nothing over answering: to be marked correct it
must hold a correct answer.

Encoding is JSON with tagged values (no pickle, no code): numbers, strings, lists, tuples,
dicts, numpy arrays and scalars, torch tensors, pandas frames and series, and the library's own
dataclasses (``basam_lite.*``, rebuilt through their constructor). Anything else is recorded by
its type name and re-checked as an opaque object.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import dataclasses
import functools
import importlib
import inspect
import io
import json
import math
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

GRADE_LOG = "BASAM_GRADE_LOG"
"""Environment variable naming the file where the kernel appends the answers it records."""

MODULE = re.compile(r"nb\d\d[a-z]?")
LIBRARY = __name__.split(".")[0] + "."
"""The library's package prefix: only its own dataclasses are rebuilt from a record."""
MAX_DEPTH = 40

_active: contextvars.ContextVar[bool] = contextvars.ContextVar("checking", default=False)


class Unreplayable(Exception):
    """A recorded answer the grader cannot re-check (bad record, or a replay that differs)."""


class _Diverged(BaseException):
    """Raised by a replayed function; a BaseException so a checker's ``except Exception`` that
    turns a learner's error into a verdict cannot swallow it."""


class Opaque:
    """Stands in for a value that could not be recorded (a learner's unusual return value)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"<unrecorded {self.kind}>"


# ---------------------------------------------------------------------------------- encoding


def _bytes(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def encode(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON-able data (tagged dicts for anything beyond JSON's own types)."""
    if depth > MAX_DEPTH:
        return {"$opaque": "too deeply nested"}
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int) and type(value) is int:
        return value
    if isinstance(value, float) and type(value) is float:
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, (list, tuple)) and type(value) in (list, tuple):
        items = [encode(v, depth + 1) for v in value]
        return items if isinstance(value, list) else {"$tuple": items}
    if type(value) is dict:
        return {"$dict": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if isinstance(value, np.generic) and value.dtype.kind in "biufc":
        return {"$npscalar": value.dtype.str, "data": _bytes(np.asarray(value))}
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biufc":
            return {"$nd": value.dtype.str, "shape": list(value.shape), "data": _bytes(value)}
        return {"$ndlist": encode(value.tolist(), depth + 1), "shape": list(value.shape)}
    module = type(value).__module__.split(".")[0]
    if module == "torch":
        import torch

        if isinstance(value, torch.Tensor):
            t = value.detach().cpu()
            name = str(t.dtype).removeprefix("torch.")
            arr = (t.float() if t.dtype == torch.bfloat16 else t).numpy()
            return {"$torch": name, "nd": encode(arr, depth + 1)}
        if isinstance(value, torch.Size):
            return {"$tuple": [int(v) for v in value]}
    if module == "pandas":
        import pandas as pd

        if isinstance(value, pd.DataFrame):
            return {
                "$df": [encode(c, depth + 1) for c in value.columns],
                "index": encode(list(value.index), depth + 1),
                "data": [_column(value.iloc[:, i], depth) for i in range(value.shape[1])],
            }
        if isinstance(value, pd.Series):
            return {
                "$series": encode(value.name, depth + 1),
                "index": encode(list(value.index), depth + 1),
                "data": _column(value, depth),
            }
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        if cls.__module__.startswith(LIBRARY):
            fields = {
                f.name: encode(getattr(value, f.name), depth + 1)
                for f in dataclasses.fields(value)
                if f.init
            }
            return {"$dc": f"{cls.__module__}:{cls.__qualname__}", "fields": fields}
    if hasattr(value, "__array__") and not callable(value):
        try:
            return encode(np.asarray(value), depth + 1)
        except Exception:  # an object whose __array__ fails: opaque below
            pass
    return {"$opaque": type(value).__qualname__}


def _column(series: Any, depth: int) -> Any:
    arr = series.to_numpy()
    if arr.dtype.kind in "biufc":
        return encode(arr, depth + 1)
    return {"$col": encode(series.tolist(), depth + 1), "dtype": str(series.dtype)}


def decode(data: Any, depth: int = 0) -> Any:
    """The value :func:`encode` gave ``data`` for (raises :class:`Unreplayable` on bad data)."""
    if depth > MAX_DEPTH + 5:
        raise Unreplayable("the record is nested too deeply")
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [decode(v, depth + 1) for v in data]
    if not isinstance(data, dict) or not data:
        raise Unreplayable(f"unknown value in the record: {type(data).__name__}")
    tag = next(iter(data))
    try:
        return _DECODERS[tag](data, depth + 1)
    except KeyError:
        raise Unreplayable(f"unknown value tag {tag!r} in the record") from None
    except Unreplayable:
        raise
    except Exception as e:
        raise Unreplayable(f"bad {tag} value in the record ({type(e).__name__}: {e})") from None


def _nd(d: dict, depth: int) -> np.ndarray:
    dtype = np.dtype(d["$nd"])
    if dtype.kind not in "biufc":
        raise Unreplayable(f"array of dtype {dtype} in the record")
    raw = base64.b64decode(d["data"], validate=True)
    shape = tuple(int(s) for s in d["shape"])
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _torch(d: dict, depth: int) -> Any:
    import torch

    dtype = getattr(torch, str(d["$torch"]))
    if not isinstance(dtype, torch.dtype):
        raise Unreplayable(f"tensor dtype {d['$torch']!r} in the record")
    return torch.from_numpy(_nd(d["nd"], depth)).to(dtype)


def _df(d: dict, depth: int) -> Any:
    import pandas as pd

    columns = [decode(c, depth) for c in d["$df"]]
    data = [_decode_column(c, depth) for c in d["data"]]
    frame = pd.DataFrame(dict(enumerate(data)), index=decode(d["index"], depth))
    frame.columns = columns
    return frame


def _series(d: dict, depth: int) -> Any:
    import pandas as pd

    return pd.Series(
        _decode_column(d["data"], depth),
        index=decode(d["index"], depth),
        name=decode(d["$series"], depth),
    )


def _decode_column(d: Any, depth: int) -> Any:
    if isinstance(d, dict) and "$col" in d:
        import pandas as pd

        return pd.array(decode(d["$col"], depth), dtype=str(d["dtype"]))
    return decode(d, depth)


def _dataclass(d: dict, depth: int) -> Any:
    module, _, qualname = str(d["$dc"]).partition(":")
    if not module.startswith(LIBRARY) or not qualname.isidentifier():
        raise Unreplayable(f"class {d['$dc']!r} in the record is not one of the library's")
    cls = getattr(importlib.import_module(module), qualname)
    if not dataclasses.is_dataclass(cls):
        raise Unreplayable(f"{d['$dc']} is not a dataclass")
    return cls(**{str(k): decode(v, depth) for k, v in dict(d["fields"]).items()})


def _special_float(text: object) -> float:
    if text not in ("nan", "inf", "-inf"):
        raise Unreplayable(f"bad float {text!r} in the record")
    return float(str(text))


_DECODERS: dict[str, Callable[[dict, int], Any]] = {
    "$float": lambda d, _: _special_float(d["$float"]),
    "$tuple": lambda d, depth: tuple(decode(v, depth) for v in d["$tuple"]),
    "$dict": lambda d, depth: {decode(k, depth): decode(v, depth) for k, v in d["$dict"]},
    "$npscalar": lambda d, depth: _nd(
        {"$nd": d["$npscalar"], "shape": [], "data": d["data"]}, depth
    )[()],
    "$nd": _nd,
    "$ndlist": lambda d, depth: np.array(decode(d["$ndlist"], depth), dtype=object).reshape(
        tuple(d["shape"])
    ),
    "$torch": _torch,
    "$df": _df,
    "$series": _series,
    "$dc": _dataclass,
    "$opaque": lambda d, _: Opaque(str(d["$opaque"])),
}


# --------------------------------------------------------------------------------- recording


class _Recorder:
    """Wraps a learner's function while a checker runs: every call's arguments and outcome."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.calls: list[dict] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        entry: dict[str, Any] = {"args": encode(list(args)), "kwargs": encode(kwargs)}
        self.calls.append(entry)
        try:
            result = self.fn(*args, **kwargs)
        except BaseException as e:
            entry["raised"] = [type(e).__name__, str(e)]
            raise
        entry["result"] = encode(result)
        return result


def _learner(value: Any) -> bool:
    """A function the learner wrote (recorded call by call); a model (``nn.Module``) is not."""
    import sys

    nn = sys.modules.get("torch.nn")
    if nn is not None and isinstance(value, nn.Module):
        return False
    return callable(value) and not isinstance(value, type) and not _encodes_as_data(value)


def _encodes_as_data(value: Any) -> bool:
    return dataclasses.is_dataclass(value) or type(value).__module__.split(".")[0] in (
        "numpy",
        "pandas",
    )


def recorded(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``fn`` (a checker named ``nbNN.check_x``) that also appends its answer to $BASAM_GRADE_LOG.

    Only the outermost checker call records (a checker calling another is one answer), and only
    while the variable names a file; otherwise the wrapper is a plain call.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        path = os.environ.get(GRADE_LOG)
        if not path or _active.get():
            return fn(*args, **kwargs)
        recorders: list[_Recorder] = []

        def swap(v: Any) -> Any:
            if _learner(v):
                recorders.append(_Recorder(v))
                return recorders[-1]
            return v

        def shape(v: Any) -> Any:
            if isinstance(v, _Recorder):
                return {"$fn": recorders.index(v)}
            return encode(v)

        call_args = [swap(a) for a in args]
        call_kwargs = {k: swap(v) for k, v in kwargs.items()}
        record: dict[str, Any] = {
            "checker": name,
            "args": [shape(a) for a in call_args],
            "kwargs": {k: shape(v) for k, v in call_kwargs.items()},
        }
        token = _active.set(True)
        try:
            result = fn(*call_args, **call_kwargs)
            record["kernel_said"] = bool(result)
            return result
        except BaseException as e:
            record["raised"] = [type(e).__name__, str(e)]
            raise
        finally:
            _active.reset(token)
            record["calls"] = [r.calls for r in recorders]
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    wrapper.__basam_checker__ = name  # type: ignore[attr-defined]
    return wrapper


def instrument(namespace: dict[str, Any]) -> None:
    """Wrap every ``check_*`` function defined in an exercise module (call at its end)."""
    module = namespace["__name__"]
    short = module.rsplit(".", 1)[-1]
    for attr, value in list(namespace.items()):
        if attr.startswith("check_") and inspect.isfunction(value) and value.__module__ == module:
            namespace[attr] = recorded(value, f"{short}.{attr}")


# ---------------------------------------------------------------------------------- checking


class _Replayer:
    """A learner's function replayed from its recorded calls, in order."""

    def __init__(self, calls: list) -> None:
        if not isinstance(calls, list):
            raise Unreplayable("bad call list in the record")
        self.calls = calls
        self.next = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.next >= len(self.calls):
            raise _Diverged("the checker called the answer more often than the kernel did")
        entry = self.calls[self.next]
        self.next += 1
        if not isinstance(entry, dict):
            raise _Diverged("bad call in the record")
        if entry.get("args") != encode(list(args)) or entry.get("kwargs") != encode(kwargs):
            raise _Diverged(f"call {self.next} of the answer had other arguments in the kernel")
        if "raised" in entry:
            ename, message = (str(x) for x in entry["raised"])
            if not ename.isidentifier():
                ename = "Error"
            raise type(ename, (Exception,), {})(message)
        try:
            return decode(entry.get("result"))
        except Unreplayable as e:
            raise _Diverged(str(e)) from None


@contextlib.contextmanager
def _checking() -> Iterator[None]:
    token = _active.set(True)
    try:
        yield
    finally:
        _active.reset(token)


def checker(name: str) -> Callable[..., Any]:
    """The checker ``nbNN.check_x`` (instrumented), or :class:`Unreplayable`."""
    module, _, func = str(name).partition(".")
    if not MODULE.fullmatch(module) or not func.startswith("check_") or not func.isidentifier():
        raise Unreplayable(f"{name!r} is not an exercise checker")
    try:
        mod = importlib.import_module(f"{__package__}.{module}")
    except ImportError:
        raise Unreplayable(f"{name!r}: no such exercise module") from None
    fn = getattr(mod, func, None)
    if getattr(fn, "__basam_checker__", None) != name:
        raise Unreplayable(f"{name!r} is not an exercise checker")
    return fn.__wrapped__  # type: ignore[union-attr]


def recheck(record: dict) -> Any:
    """Run the record's checker again here on its decoded answer; return its Verdict.

    Raises :class:`Unreplayable` when the record is malformed or the replay diverges from what
    the kernel did; an error the checker itself raises propagates (as it did in the kernel).
    """
    if not isinstance(record, dict):
        raise Unreplayable("a record is not an object")
    fn = checker(record.get("checker", ""))
    calls = record.get("calls", [])
    if not isinstance(calls, list):
        raise Unreplayable("bad call list in the record")
    replayers = [_Replayer(c) for c in calls]

    def value(v: Any) -> Any:
        if isinstance(v, dict) and set(v) == {"$fn"}:
            i = v["$fn"]
            if not isinstance(i, int) or not 0 <= i < len(replayers):
                raise Unreplayable("bad function reference in the record")
            return replayers[i]
        return decode(v)

    args = record.get("args", [])
    kwargs = record.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise Unreplayable("bad arguments in the record")
    call_args = [value(a) for a in args]
    call_kwargs = {str(k): value(v) for k, v in kwargs.items()}
    dropped = _drop_opaque(fn, call_args, call_kwargs)
    try:
        with _checking(), contextlib.redirect_stdout(io.StringIO()):
            v = fn(*call_args, **call_kwargs)
    except _Diverged as e:
        raise Unreplayable(str(e)) from None
    if dropped:
        note = f" (re-checked without {', '.join(dropped)}: the grader cannot rebuild it)"
        v = type(v)(v.correct, v.message + note)
    return v


def _drop_opaque(fn: Callable[..., Any], args: list, kwargs: dict) -> list[str]:
    """Replace an argument that could not be recorded (a model) by its parameter's default,
    where there is one (the checker then runs its other cases); raise :class:`Unreplayable`
    where there is none. Returns the parameters replaced."""
    params = list(inspect.signature(fn).parameters.values())
    dropped = []
    for i, a in enumerate(args):
        if isinstance(a, Opaque):
            if i >= len(params) or params[i].default is inspect.Parameter.empty:
                raise Unreplayable(f"the answer holds a {a.kind}, which the grader cannot rebuild")
            args[i] = params[i].default
            dropped.append(f"{params[i].name} ({a.kind})")
    by_name = {p.name: p for p in params}
    for k, a in list(kwargs.items()):
        if isinstance(a, Opaque):
            p = by_name.get(k)
            if p is None or p.default is inspect.Parameter.empty:
                raise Unreplayable(f"the answer holds a {a.kind}, which the grader cannot rebuild")
            kwargs[k] = p.default
            dropped.append(f"{k} ({a.kind})")
    return dropped
