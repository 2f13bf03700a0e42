"""Pulumi.yaml's typed config: what the Pulumi CLI checks before the program runs, on every stack.

`pulumi preview` and `up` load Pulumi.yaml, check its `config:` block (Project.Validate in
pulumi/pulumi sdk/go/common/workspace/project.go, with the project JSON schema's config types),
then ValidateStackConfigAndApplyProjectConfig (pkg/workspace/config.go, read at pkg/v3.259; the
same code in sdk/go/common/workspace before): mergeConfig reports every project key a stack lacks
that has neither `default` nor `value` ("Stack 'dev' is missing configuration values ..."), puts
the defaults into the stack's config, and validateStackConfigValue checks each typed key: secure
if declared `secret`, then ValidateConfigValue on its type (array items included). Mocks never
run these checks, so this module does, with the same rules and messages, on what the CLI reads:
stack files through Go's yaml.v3 (YAML 1.2 scalars), values as config.Value (text, or JSON for
lists and maps). It also keeps Pulumi.yaml and the settings model (NodeSettings) in step.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

import pulumi
import pytest
import yaml
from pydantic import BaseModel

from tests.pulumi_harness import mock_certificate
from wis2node.settings import PROJECT, NodeSettings
from wis2node.stackfile import ROOT, stack_files

SIMPLE_TYPES = ("string", "integer", "boolean", "array", "object")  # project.json: simpleConfigType
DECLARATION_ATTRIBUTES = {"type", "items", "description", "secret", "default", "value"}


class CliError(Exception):
    """What the CLI would print instead of running the program."""


# -- what the CLI reads ---------------------------------------------------------------------------


class GoYamlLoader(yaml.SafeLoader):
    """Scalars resolved as Go's yaml.v3 does (YAML 1.2 core schema); PyYAML resolves YAML 1.1."""


GoYamlLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:timestamp")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
GoYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
GoYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)


def _go_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    return int(text, 0) if text.startswith(("0o", "0x")) else int(text, 10)  # 010 is ten, not eight


GoYamlLoader.add_constructor("tag:yaml.org,2002:int", _go_int)


@dataclass(frozen=True)
class ConfigValue:
    """sdk/go/common/resource/config.Value: the text the program gets, and how the CLI sees it."""

    text: str
    secure: bool = False
    object: bool = False


def _has_secure(value: Any) -> bool:
    if _is_secure_value(value):
        return True
    if isinstance(value, dict):
        return any(_has_secure(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_secure(v) for v in value)
    return False


def _is_secure_value(value: Any) -> bool:
    """config/object.go isSecureValue: a map of exactly {secure: <string>}."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("secure"), str)


def config_value(raw: Any) -> ConfigValue:
    """config/object.go MarshalString: scalars become text, lists and maps JSON (objects)."""
    if _is_secure_value(raw):
        return ConfigValue(raw["secure"], secure=True)
    if isinstance(raw, str):
        return ConfigValue(raw)
    if isinstance(raw, (bool, int, float)):
        return ConfigValue(json.dumps(raw))
    return ConfigValue(json.dumps(raw, separators=(",", ":")), secure=_has_secure(raw), object=True)


def parse_key(key: str) -> tuple[str, str]:
    """config/key.go ParseKey: <namespace>:<name> (or the old <namespace>:config:<name>)."""
    parts = key.split(":")
    if len(parts) == 2:
        return parts[0], parts[1]
    if len(parts) == 3 and parts[1] == "config":
        return parts[0], parts[2]
    raise CliError(
        f"could not parse {key} as a configuration key (configuration keys should be of the form `<namespace>:<name>`)"
    )


def read_stack(text: str) -> dict[tuple[str, str], ConfigValue]:
    document = yaml.load(text, Loader=GoYamlLoader) or {}
    return {parse_key(key): config_value(value) for key, value in (document.get("config") or {}).items()}


def read_project() -> dict:
    return yaml.load((ROOT / "Pulumi.yaml").read_text(encoding="utf-8"), Loader=GoYamlLoader)


# -- the CLI's checks -----------------------------------------------------------------------------


def infer_full_type_name(type_name: str, items: dict | None) -> str:
    """project.go InferFullTypeName."""
    if items is not None:
        return f"array<{infer_full_type_name(items.get('type'), items.get('items'))}>"
    return type_name


def validate_config_value(type_name: str, items: dict | None, value: Any) -> bool:
    """project.go ValidateConfigValue (Go's int is never a bool; JSON numbers arrive as float64)."""
    if type_name == "string":
        return isinstance(value, str)
    if type_name == "integer":
        if isinstance(value, bool):
            return False
        if isinstance(value, int):
            return True
        if isinstance(value, float):
            return value == int(value)
        if isinstance(value, str):  # strconv.Atoi
            return re.fullmatch(r"[+-]?[0-9]+", value) is not None and -(2**63) <= int(value) < 2**63
        return False
    if type_name == "boolean":
        return value in ("true", "false") or isinstance(value, bool)
    if type_name == "object":
        return isinstance(value, dict)
    if not isinstance(value, list) or items is None:
        return False
    return all(validate_config_value(items.get("type"), items.get("items"), item) for item in value)


def validate_project(project: dict) -> None:
    """project.go Project.Validate, with the JSON schema's constraints on a config declaration."""
    name = project["name"]
    for config_key, declaration in (project.get("config") or {}).items():
        if not isinstance(declaration, dict):
            raise CliError(f"config '{config_key}': expected a declaration (type, description, default)")
        unknown = set(declaration) - DECLARATION_ATTRIBUTES
        if unknown:
            raise CliError(f"#/config/{config_key}: additionalProperties {sorted(unknown)} not allowed")
        type_name = declaration.get("type")
        if type_name is not None and type_name not in SIMPLE_TYPES:
            raise CliError(f"#/config/{config_key}/type: value must be one of {SIMPLE_TYPES}")
        items = declaration.get("items")
        while items is not None:
            if "type" not in items:
                raise CliError(f"#/config/{config_key}/items: missing properties: 'type'")
            if items["type"] == "array" and "items" not in items:
                raise CliError(f"#/config/{config_key}/items: missing properties: 'items'")
            items = items.get("items")
        default, value = declaration.get("default"), declaration.get("value")
        if default is not None and value is not None:
            raise CliError(f"project config '{config_key}' cannot have both a 'default' and 'value' attribute")
        if ":" not in config_key or config_key.startswith(f"{name}:"):
            if type_name == "array" and declaration.get("items") is None:
                raise CliError(
                    f"The configuration key '{config_key}' declares an array but does not specify "
                    "the underlying type via the 'items' attribute"
                )
            if (
                type_name is not None
                and default is not None
                and not validate_config_value(type_name, declaration.get("items"), default)
            ):
                raise CliError(
                    f"The default value specified for configuration key '{config_key}' is not of the "
                    f"expected type '{infer_full_type_name(type_name, declaration.get('items'))}'"
                )
        else:
            if type_name is not None:
                raise CliError(
                    f"Configuration key '{config_key}' is not namespaced by the project and should not define a type"
                )
            if default is not None:
                raise CliError(
                    f"Configuration key '{config_key}' is not namespaced by the project and should "
                    "not define a default value. Did you mean to use the 'value' attribute instead of "
                    "'default'?"
                )
            if value is None:
                raise CliError(f"Configuration key '{config_key}' is namespaced and must provide an attribute 'value'")


def _format_missing_keys(keys: list[str]) -> str:
    """config.go formatMissingKeys: 'a', 'b' and 'c'."""
    if len(keys) == 1:
        return f"'{keys[0]}'"
    keys = sorted(keys)
    parts = [f"'{key}', " for key in keys[:-2]] + [f"'{keys[-2]}' ", f"and '{keys[-1]}'"]
    return "".join(parts)


def _create_config_value(raw: Any) -> ConfigValue:
    """config.go createConfigValue: string, int and bool as fmt's %v; anything else as JSON."""
    if isinstance(raw, bool):
        return ConfigValue("true" if raw else "false")
    if isinstance(raw, (str, int)):
        return ConfigValue(str(raw))
    return ConfigValue(json.dumps(raw, separators=(",", ":")), object=True)


def no_decrypter(ciphertext: str) -> str:
    raise CliError("a secure value: this check has no key to decrypt it with")


def validate_stack_config_and_apply_project_config(
    stack: str, project: dict, config: dict[tuple[str, str], ConfigValue], decrypt: Callable[[str], str] = no_decrypter
) -> dict[tuple[str, str], ConfigValue]:
    """config.go mergeConfig(validate=true): the stack's config with the project's defaults, or CliError."""
    validate_project(project)
    name = project["name"]
    merged = dict(config)
    missing = []
    for config_key in sorted(project.get("config") or {}):
        declaration = project["config"][config_key]
        key = parse_key(config_key) if ":" in config_key else (name, config_key)
        has_default, has_value = declaration.get("default") is not None, declaration.get("value") is not None
        if key not in merged and not has_value and not has_default and key[0] == name:
            missing.append(config_key)
            continue
        if key not in merged and (has_value or has_default):
            merged[key] = _create_config_value(declaration["default"] if has_default else declaration["value"])
    if missing:
        plural = "values" if len(missing) > 1 else "value"
        raise CliError(f"Stack '{stack}' is missing configuration {plural} {_format_missing_keys(missing)}")
    for config_key in sorted(project.get("config") or {}):  # validateStackConfigValues
        declaration = project["config"][config_key]
        key = parse_key(config_key) if ":" in config_key else (name, config_key)
        if declaration.get("type") is None:
            continue
        value = merged.get(key, ConfigValue(""))
        if declaration.get("secret") and not value.secure:
            raise CliError(f"Stack '{stack}' with configuration key '{config_key}' must be encrypted as it's secret")
        if value.object and value.secure:
            raise CliError("secure values inside a list or map: this check does not decrypt those")
        text = decrypt(value.text) if value.secure else value.text
        content = json.loads(text) if value.object else text
        if not validate_config_value(declaration["type"], declaration.get("items"), content):
            raise CliError(
                f"Stack '{stack}' with configuration key '{config_key}' must be of type "
                f"'{infer_full_type_name(declaration['type'], declaration.get('items'))}'"
            )
    return merged


# -- the checker refuses what the CLI refuses (its own tests' cases) --------------------------------

PULUMI_TEST_PROJECT = {
    "name": "test",
    "config": {
        "hello": {"type": "integer"},
        "values": {"type": "array", "items": {"type": "string"}},
        "world": {"type": "string"},
    },
}


def test_the_checker_reports_missing_keys_as_the_cli_does():
    with pytest.raises(CliError) as refused:
        validate_stack_config_and_apply_project_config("dev", PULUMI_TEST_PROJECT, read_stack(""))
    assert str(refused.value) == "Stack 'dev' is missing configuration values 'hello', 'values' and 'world'"
    one = {"name": "test", "config": {"values": {"type": "array", "items": {"type": "string"}}}}
    with pytest.raises(CliError, match=r"^Stack 'dev' is missing configuration value 'values'$"):
        validate_stack_config_and_apply_project_config("dev", one, read_stack(""))


@pytest.mark.parametrize(
    "stack_yaml,message",
    [
        (
            "config:\n  test:hello: twelve\n  test:values: [a]\n  test:world: w\n",
            "Stack 'dev' with configuration key 'hello' must be of type 'integer'",
        ),
        (
            "config:\n  test:hello: 12\n  test:values: [a, 2]\n  test:world: w\n",
            "Stack 'dev' with configuration key 'values' must be of type 'array<string>'",
        ),
        (
            "config:\n  test:hello: 12\n  test:values: a\n  test:world: w\n",
            "Stack 'dev' with configuration key 'values' must be of type 'array<string>'",
        ),
    ],
    ids=["integer", "array item", "array"],
)
def test_the_checker_reports_wrong_types_as_the_cli_does(stack_yaml, message):
    with pytest.raises(CliError) as refused:
        validate_stack_config_and_apply_project_config("dev", PULUMI_TEST_PROJECT, read_stack(stack_yaml))
    assert str(refused.value) == message


def test_the_checker_requires_secrets_encrypted_as_the_cli_does():
    project = {"name": "test", "config": {"importantNumber": {"type": "integer", "secret": True}}}
    with pytest.raises(CliError, match="'importantNumber' must be encrypted as it's secret"):
        validate_stack_config_and_apply_project_config(
            "dev", project, read_stack("config:\n  test:importantNumber: 20\n")
        )
    # Pulumi's test encrypts with its Base64Crypter, so does this one
    encrypted = read_stack(f"config:\n  test:importantNumber:\n    secure: {base64.b64encode(b'20').decode()}\n")
    validate_stack_config_and_apply_project_config(
        "dev", project, encrypted, decrypt=lambda text: base64.b64decode(text).decode()
    )


def test_the_checker_refuses_a_default_of_the_wrong_type():
    project = {"name": "test", "config": {"size": {"type": "integer", "default": "large"}}}
    with pytest.raises(
        CliError, match="default value specified for configuration key 'size' is not of the expected type 'integer'"
    ):
        validate_project(project)


# -- this project's Pulumi.yaml --------------------------------------------------------------------


def test_pulumi_yaml_is_a_valid_project():
    project = read_project()
    assert project["name"] == PROJECT and project["stackConfigDir"] == "stacks"
    assert project["runtime"]["name"] == "python"
    validate_project(project)
    for name, declaration in project["config"].items():
        assert declaration.get("description"), name
    # what PyYAML (YAML 1.1: the settings' reader) and the CLI (YAML 1.2) read must agree: an
    # unquoted 4:15 is 255 for one and "4:15" for the other, an unquoted on is true and "on"
    assert yaml.safe_load((ROOT / "Pulumi.yaml").read_text()) == project


@pytest.mark.parametrize("stack_file", stack_files(), ids=lambda s: s.stack)
def test_every_stack_file_passes_the_cli(stack_file):
    text = stack_file.path.read_text(encoding="utf-8")
    assert yaml.load(text, Loader=GoYamlLoader) == yaml.safe_load(text), "the CLI and the settings read it apart"
    stack_file.settings()  # the settings accept it
    validate_stack_config_and_apply_project_config(stack_file.stack, read_project(), read_stack(text))


def as_the_program_reads_it(
    stack: str, merged: dict[tuple[str, str], ConfigValue], monkeypatch: pytest.MonkeyPatch
) -> NodeSettings:
    """The settings the program builds from the config the CLI hands it (components/settings.py)."""
    from components.settings import load_settings

    pulumi.runtime.set_all_config({f"{namespace}:{name}": value.text for (namespace, name), value in merged.items()})
    monkeypatch.setattr(pulumi, "get_stack", lambda: stack)
    return load_settings()


PROD = next(s for s in stack_files() if s.stack.endswith("-prod"))
FQDN = "wis2node.examplemet.example.org"
# Every key of the model, each set to a value the settings accept and that is not its default.
FULL_SURFACE = {
    "aws:region": "eu-west-1",
    "wis2-node:centreId": "aq-examplemet",
    "wis2-node:environment": "production",
    "wis2-node:fqdn": FQDN,
    "wis2-node:hostedZone": "examplemet.example.org",
    "wis2-node:availabilityZone": "eu-west-1b",
    "wis2-node:subnetId": "subnet-0123456789abcdef0",
    "wis2-node:instanceType": "t3.small",
    "wis2-node:imageId": "ami-0123456789abcdef0",
    "wis2-node:rootVolumeGb": 32,
    "wis2-node:dataVolumeGb": 100,
    "wis2-node:globalServices": False,
    "wis2-node:excludeOperators": ["jp-jma"],
    "wis2-node:partners": [
        {"cidr": "198.51.100.0/24", "description": "headquarters", "ports": [443, 8883]},
        {"cidr": "2a00:1450::/32", "description": "an ipv6 partner", "ports": [8883]},
    ],
    "wis2-node:openToInternet": [443],
    "wis2-node:alertEmails": ["ops@examplemet.example.org"],
    "wis2-node:tags": {"cost-centre": "wis2", "owner": "ops"},
    "wis2-node:tlsMode": "provided",
    "wis2-node:certificateAuthority": "digicert.com",
    "wis2-node:certificate": mock_certificate(FQDN),
    "wis2-node:retentionDays": 7,
    "wis2-node:maxFileMb": 50,
    "wis2-node:uploaderPrincipals": [
        "arn:aws:iam::210987654321:role/message-switch",
        "arn:aws:iam::210987654321:role/ingest/backup-switch",
    ],
    "wis2-node:cpuAlarmPercent": 70,
    "wis2-node:memoryAlarmPercent": 75,
    "wis2-node:diskAlarmPercent": 90,
    "wis2-node:certificateAlarmDays": 14,
    "wis2-node:rebootTime": "04:15",
    "wis2-node:snapshotRetentionDays": 30,
    "wis2-node:dataVolumeSnapshotId": "snap-0123456789abcdef0",
    "wis2-node:logRetentionDays": 90,
    "wis2-node:centreName": "Example Meteorological Service",
    "wis2-node:contactEmail": "wis2-focal-point@examplemet.example.org",
}
REQUIRED = {
    key: FULL_SURFACE[key]
    for key, field in ((field.alias, field) for field in NodeSettings.model_fields.values() if field.alias)
    if field.is_required()
}


def test_the_full_surface_passes_the_settings_and_the_cli(monkeypatch):
    assert set(FULL_SURFACE) == set(NodeSettings.config_keys()), "a key of the model is not exercised"
    expected = NodeSettings.from_config(PROD.stack, FULL_SURFACE)
    for field, value in NodeSettings.model_fields.items():
        if value.alias:
            assert getattr(expected, field) != value.get_default(call_default_factory=True), field
    text = yaml.safe_dump({"config": FULL_SURFACE})
    merged = validate_stack_config_and_apply_project_config(PROD.stack, read_project(), read_stack(text))
    assert as_the_program_reads_it(PROD.stack, merged, monkeypatch) == expected


def test_a_stack_of_only_the_required_keys_passes_and_gets_the_models_defaults(monkeypatch):
    minimal = dict(REQUIRED)
    expected = NodeSettings.from_config(PROD.stack, minimal)
    merged = validate_stack_config_and_apply_project_config(
        PROD.stack, read_project(), read_stack(yaml.safe_dump({"config": minimal}))
    )
    assert as_the_program_reads_it(PROD.stack, merged, monkeypatch) == expected


@pytest.mark.parametrize("missing", sorted(k for k in REQUIRED if k.startswith(f"{PROJECT}:")))
def test_the_cli_and_the_settings_require_the_same_keys(missing):
    without = {k: v for k, v in REQUIRED.items() if k != missing}
    with pytest.raises(CliError, match=f"is missing configuration value '{missing.split(':')[1]}'$"):
        validate_stack_config_and_apply_project_config(
            PROD.stack, read_project(), read_stack(yaml.safe_dump({"config": without}))
        )


# -- Pulumi.yaml and the model stay in step --------------------------------------------------------


def cli_type(annotation: Any) -> str | None:
    """The Pulumi config type of a model field (InferFullTypeName's form); None if there is none."""
    origin = get_origin(annotation)
    if origin is Union:
        arms = [a for a in get_args(annotation) if a is not type(None)]
        return cli_type(arms[0]) if len(arms) == 1 else None
    if origin is Literal:
        kinds = {type(v) for v in get_args(annotation)}
        return cli_type(kinds.pop()) if len(kinds) == 1 else None
    if origin is list:
        return f"array<{cli_type(get_args(annotation)[0])}>"
    if origin is dict or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return "object"
    return {str: "string", bool: "boolean", int: "integer"}.get(annotation)


def test_pulumi_yaml_and_the_settings_model_agree():
    project = read_project()
    declared = {f"{PROJECT}:{name}": declaration for name, declaration in project["config"].items()}
    fields = {
        field.alias: field
        for field in NodeSettings.model_fields.values()
        if field.alias and field.alias.startswith(f"{PROJECT}:")
    }
    assert set(declared) <= set(fields), "Pulumi.yaml declares a key the settings do not know"
    for key, field in fields.items():
        default = field.get_default(call_default_factory=True)
        kind = cli_type(field.annotation)
        # Pulumi cannot say "optional, no default" (a declared key without one is required), and
        # objects in config need a CLI of 2025 or later: those stay undeclared, and only those.
        must_stay_undeclared = (not field.is_required() and default is None) or "object" in (kind or "object")
        if must_stay_undeclared:
            assert key not in declared, f"{key} is declared, but the CLI would require it or may not know its type"
            continue
        assert key in declared, f"{key} is a setting Pulumi.yaml does not declare"
        declaration = declared[key]
        assert infer_full_type_name(declaration["type"], declaration.get("items")) == kind, key
        if field.is_required():
            assert "default" not in declaration and "value" not in declaration, f"{key} is required by the settings"
        else:
            assert "default" in declaration, f"{key} is optional in the settings but required by the CLI"
            # the default as the program gets it (text) must give the model's default
            text = _create_config_value(declaration["default"]).text
            structured = NodeSettings.config_keys()[key]
            decoded = NodeSettings.model_validate(
                {**REQUIRED, "stack": PROD.stack, key: json.loads(text) if structured else text}
            )
            assert getattr(decoded, field_name(key)) == default, (
                f"{key}: Pulumi.yaml's default differs from the model's"
            )


def field_name(alias: str) -> str:
    return next(name for name, field in NodeSettings.model_fields.items() if field.alias == alias)
