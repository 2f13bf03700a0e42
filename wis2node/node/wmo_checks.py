"""WMO's own validators, the second check after the node's rules: pywis-topics and pywis-pubsub's WNM suite."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import logging
import sys
import threading
from collections.abc import Callable
from types import ModuleType

from wis2node.node.rules import Rejected, to_json

LOG = logging.getLogger("wis2node.node.agent")
MESSAGE_MAX = 8192  # WNM 1.0


def topic_validator(centre_id: str) -> Callable[[str], bool]:
    """pywis-topics' check; strict about the centre-id only once WMO has registered it."""
    from pywis_topics.topics import TopicHierarchy

    hierarchy = TopicHierarchy()
    strict = centre_id.endswith("-test") or centre_id in hierarchy.topics[3]
    if not strict:
        LOG.warning("%s is not in WMO's registered centre-ids yet: topics are checked without it", centre_id)
    return lambda topic: hierarchy.validate(topic, strict=strict, publication=True)


def wnm_test_suite() -> type:
    """WMO's WNMTestSuite, imported once (see _import_wnm_test_suite), its schema's validator built once.

    The suite's own schema test reads the schema file and builds a validator for every message:
    a third to a half of the suite's cost for a message the size of a notification (0.55 to 0.69 ms
    a message against 0.34 to 0.43 with the validator kept, Python 3.11, 2-vCPU Xeon). This subclass runs that
    test with the same schema file (read again when it changes on disk; unreadable, it is the node's
    fault, a RuntimeError, as WMO's suite says of a missing one), the same validator class
    (jsonschema's Draft 2020-12, as the suite's module imports it) and the same result; every
    other test, and run_tests itself, is WMO's code as it ships. tests/wis2node/test_wmo_checks.py
    compares the two on valid and invalid messages.
    """
    global _SUITE
    suite = _SUITE
    if suite is None:
        with _IMPORTING:
            if _SUITE is None:
                _SUITE = _cached_schema_suite(_import_wnm_test_suite())
            suite = _SUITE
    return suite


_SUITE: type | None = None


def _cached_schema_suite(suite: type) -> type:
    module = sys.modules[suite.__module__]
    # where the suite's module keeps the schema's path: 0.13 (Python 3.12+), then 0.12
    schema_path = getattr(module, "WNM_MESSAGE_SCHEMA", None) or module.MESSAGE_SCHEMA
    # ((mtime, size) of the file, its validator), replaced whole: workers read it without a lock
    cache: list[tuple[tuple[int, int], object] | None] = [None]

    def validator():
        try:
            stat = schema_path.stat()
        except FileNotFoundError:
            return None
        key, cached = (stat.st_mtime_ns, stat.st_size), cache[0]
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            with schema_path.open() as fh:
                built = module.Draft202012Validator(json.load(fh))
        except ValueError as err:
            # the node's fault, not the upload's (as a missing schema is): the event stays queued,
            # where the suite's own ValueError would park it as a notification failing the schema
            raise RuntimeError(f"WNM schema {schema_path} is not JSON ({err}): sync the bundle again") from None
        cache[0] = (key, built)
        return built

    class CachedSchemaSuite(suite):
        def test_requirement_validation(self):
            """The suite's schema test (WNM Annex A, validation), its validator built once."""
            checker = validator()
            if checker is None:  # as the suite's own test says it
                return super().test_requirement_validation()
            status = {"id": module.gen_test_id("validation"), "code": "PASSED"}
            errors = [f"{error.json_path}: {error.message}" for error in checker.iter_errors(self.message)]
            if errors:
                status["code"] = "FAILED"
                status["message"] = f"{len(errors)} error(s)"
                status["errors"] = errors
            return status

    return CachedSchemaSuite


def _import_wnm_test_suite() -> type:
    """pywis-pubsub's WNMTestSuite class, WMO's own code, without the rest of its package.

    Importing `pywis_pubsub.ets` (0.12) or `pywis_pubsub.wnm.ets` (0.13) the ordinary way runs the
    package's `__init__`, which builds its command line and so imports every command: the
    subscriber's bounding-box filter brings shapely and numpy, the KPI and publish commands more,
    about 25 MB resident and 100 ms at start for a check that needs none of them (the suite needs
    jsonschema, its schema file and a few helpers). So the packages above the suite are put in
    sys.modules as their real module objects (same spec, file and __path__) whose `__init__` has
    not run yet, with the version the report quotes; the suite's module itself is imported and run
    unchanged. Anything else later imported from the package still works: a submodule is imported
    as usual, and the first other attribute asked of a package runs its `__init__` then (see
    _PendingInit). In a process that has imported pywis-pubsub already, nothing of this happens.
    """
    if importlib.util.find_spec("pywis_pubsub") is None:
        raise ModuleNotFoundError("pywis-pubsub is not installed (requirements-node.txt)", name="pywis_pubsub")
    for name in ("pywis_pubsub.wnm.ets", "pywis_pubsub.ets"):  # 0.13 (Python 3.12+, the VM's), then 0.12
        try:
            return _import_without_package_init(name).WNMTestSuite
        except ModuleNotFoundError as err:
            if err.name not in (name, name.rsplit(".", 1)[0]):
                raise
    raise ModuleNotFoundError("pywis-pubsub has no WNM test suite where 0.12 and 0.13 keep it", name="pywis_pubsub")


_IMPORTING = threading.Lock()


class _PendingInit:
    """A package's module `__getattr__` until its `__init__` has run (PEP 562).

    A submodule is imported as the import system would; any other name runs the package's
    `__init__` in the module itself, once, after which the module is what an ordinary import
    would have made."""

    def __init__(self, module: ModuleType):
        self.module = module

    def __call__(self, attribute: str):
        name = self.module.__name__
        if attribute.startswith("__"):  # probes such as __wrapped__ or __all__: not a reason to run __init__
            raise AttributeError(f"module {name!r} has no attribute {attribute!r}")
        if importlib.util.find_spec(f"{name}.{attribute}") is not None:
            return importlib.import_module(f"{name}.{attribute}")
        del self.module.__getattr__
        spec = self.module.__spec__
        assert spec is not None and spec.loader is not None  # made by module_from_spec from a found spec
        spec.loader.exec_module(self.module)
        return getattr(self.module, attribute)


def _import_without_package_init(name: str) -> ModuleType:
    """Import module `name`, with those of its packages not imported yet left un-run (see wnm_test_suite)."""
    parts = name.split(".")
    for depth in range(1, len(parts)):
        package = ".".join(parts[:depth])
        if package in sys.modules:
            continue
        spec = importlib.util.find_spec(package)
        if spec is None or spec.submodule_search_locations is None:
            raise ModuleNotFoundError(f"No module named {package!r}", name=package)
        module = importlib.util.module_from_spec(spec)
        if depth == 1:
            vars(module)["__version__"] = importlib.metadata.version(package.replace("_", "-"))
        vars(module)["__getattr__"] = _PendingInit(module)  # PEP 562: the module's attribute hook
        sys.modules[package] = module
        if depth > 1:
            setattr(sys.modules[".".join(parts[: depth - 1])], parts[depth - 1], module)
    return importlib.import_module(name)


def validate_notification(message: dict) -> str:
    """The message as it goes on the wire, once it passes the WNM test suite and the size limit."""
    WNMTestSuite = wnm_test_suite()
    payload = to_json(message)
    try:
        report = WNMTestSuite(message).run_tests(fail_on_schema_validation=True)["ets-report"]
    except ValueError as err:
        raise Rejected(f"notification fails the WNM schema: {err}") from None
    failed = [test["id"] for test in report["tests"] if test["code"] == "FAILED"]
    if failed:
        raise Rejected(f"notification fails {', '.join(failed)}")
    if len(payload) > MESSAGE_MAX:
        raise Rejected(f"notification over {MESSAGE_MAX} bytes")
    return payload
