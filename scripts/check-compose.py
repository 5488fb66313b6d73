"""Checks a Compose file without a Docker engine; run by scripts/check-compose.sh.

1. YAML (1.2, as Compose reads it; duplicate keys are errors) and its merge keys.
2. The Compose Specification's JSON schema (compose-spec/schema/compose-spec.json as vendored
   by the PyPI package check-jsonschema), on the file as written, before interpolation.
3. Interpolation syntax, as Compose parses ${VAR}, ${VAR:-default}, ${VAR:?error}, $$ ...
4. The project's rules: two gateways and two workers that start only after Temporal is healthy,
   its search attributes exist and the restock schema is migrated; no literal secrets; pinned
   images; conditions that can be met; distinct host ports.

Usage: check-compose.py FILE. Prints one OK line, or every violation and exits 1.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import re
import sys
from pathlib import Path

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarbool import ScalarBoolean

SCHEMA_PACKAGE = "check-jsonschema"
SCHEMA_RESOURCE = ("check_jsonschema.builtin_schemas.vendor", "compose-spec.json")

# Environment keys whose values are secrets. *_FILE keys hold paths, not secrets.
SECRET_KEY = re.compile(r"SECRET|PASSWORD|PASSWD|PWD|TOKEN|API_?KEY|PRIVATE_?KEY", re.I)
# The only accepted form for a secret: a required variable, ${NAME:?message} or ${NAME?message}.
REQUIRED_REF = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?\?[^{}$]*\}")
# scheme://user:password@ with a password that is not a ${...} reference.
URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*:(?!\$\{)[^@\s/]+@")
VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}" if where else message)


# --- interpolation ------------------------------------------------------------------------


class TemplateError(ValueError):
    pass


def parse_braced(text: str, start: int) -> tuple[str, str | None, str, int]:
    """Parses ${...} whose "${" starts at `start`: (name, operator, argument, end index)."""
    i = start + 2
    m = VAR_NAME.match(text, i)
    if not m:
        raise TemplateError(f"invalid variable name after '${{' at offset {start}")
    name, i = m.group(0), m.end()
    if i < len(text) and text[i] == "}":
        return name, None, "", i + 1
    op = None
    for candidate in (":-", ":?", ":+", "-", "?", "+"):
        if text.startswith(candidate, i):
            op = candidate
            break
    if op is None:
        raise TemplateError(f"invalid interpolation format for '${{{name}': expected '}}' or a modifier")
    i += len(op)
    arg_start, depth = i, 1
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return name, op, text[arg_start:i], i + 1
        i += 1
    raise TemplateError(f"unclosed '${{{name}{op}' (missing '}}')")


def references(text: str) -> list[tuple[int, str, str | None, str]]:
    """Every interpolation in `text` as (offset, name, operator, argument); raises TemplateError."""
    found = []
    i = 0
    while True:
        i = text.find("$", i)
        if i < 0 or i == len(text) - 1:
            return found
        nxt = text[i + 1]
        if nxt == "$":
            i += 2
        elif nxt == "{":
            name, op, arg, end = parse_braced(text, i)
            found.append((i, name, op, arg))
            if op is not None:  # the default/error text may itself interpolate
                for _, n, o, a in references(arg):
                    found.append((i, n, o, a))
            i = end
        elif VAR_NAME.match(nxt):
            name = VAR_NAME.match(text, i + 1).group(0)
            found.append((i, name, None, ""))
            i += 1 + len(name)
        else:
            i += 1


def resolve_defaults(text: str) -> str:
    """`text` interpolated as if no variable were set: ${X:-d} -> d, others -> ""."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            _, op, arg, end = parse_braced(text, i)
            out.append(resolve_defaults(arg) if op in (":-", "-") else "")
            i = end
        elif text[i] == "$" and i + 1 < len(text) and VAR_NAME.match(text[i + 1]):
            i += 1 + len(VAR_NAME.match(text, i + 1).group(0))
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def strings(node, path: str = ""):
    """(path, string) for every string value in the tree (keys are not interpolated)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for n, v in enumerate(node):
            yield from strings(v, f"{path}[{n}]")
    elif isinstance(node, str):
        yield path, node


# --- helpers ------------------------------------------------------------------------------


def plain(node):
    """ruamel's round-trip types as plain dict, list, str, bool, int and float."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, ScalarBoolean):
        return bool(node)
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, str):
        return str(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


def as_words(command) -> list[str]:
    if isinstance(command, list):
        return [str(w) for w in command]
    if isinstance(command, str):
        return command.split()
    return []


def env_items(env) -> list[tuple[str, object]]:
    """environment (mapping or KEY=VALUE list) as (key, value); value None means pass-through."""
    if isinstance(env, dict):
        return [(str(k), v) for k, v in env.items()]
    items = []
    for entry in env or []:
        key, sep, value = str(entry).partition("=")
        items.append((key, value if sep else None))
    return items


def depends(service: dict) -> dict[str, str]:
    """depends_on as {service: condition}; the short (list) form means service_started."""
    dep = service.get("depends_on") or {}
    if isinstance(dep, list):
        return {str(name): "service_started" for name in dep}
    return {
        str(name): spec.get("condition", "service_started") if isinstance(spec, dict) else "service_started"
        for name, spec in dep.items()
    }


def has_healthcheck(service: dict) -> bool:
    hc = service.get("healthcheck")
    if not isinstance(hc, dict) or hc.get("disable") is True:
        return False
    test = hc.get("test")
    return bool(test) and test != ["NONE"]


# --- checks -------------------------------------------------------------------------------


def check_schema(doc, schema, problems: Problems) -> None:
    validator = Draft202012Validator(schema)
    errors = list(validator.iter_errors(doc))
    paths = [tuple(str(p) for p in e.absolute_path) for e in errors]
    reported = set()
    for error, path in sorted(zip(errors, paths), key=lambda ep: ep[1]):
        # A subschema that fails leaves all of its properties "unevaluated": that follow-on error
        # says nothing when a deeper error under the same path gives the cause.
        if error.validator == "unevaluatedProperties" and any(
            len(other) > len(path) and other[: len(path)] == path for other in paths
        ):
            continue
        if error.context:  # oneOf/anyOf: report the most relevant branch, not the whole instance
            error = best_match([error])
            path = tuple(str(p) for p in error.absolute_path)
        where = ".".join(path) or "(top level)"
        line = f"compose-spec schema: {error.message}"
        if (where, line) not in reported:
            reported.add((where, line))
            problems.add(where, line)


def check_interpolation(doc, problems: Problems) -> None:
    for where, text in strings(doc):
        try:
            refs = references(text)
        except TemplateError as exc:
            problems.add(where, f"invalid interpolation: {exc} (write $$ for a literal $)")
            continue
        in_script = re.match(
            r"services\.[^.]+\.(command|entrypoint|healthcheck\.test)(\[|$)|configs\.[^.]+\.content$",
            where,
        )
        if in_script and refs:
            names = ", ".join(sorted({f"${n}" for _, n, _, _ in refs}))
            problems.add(
                where,
                f"{names} would be replaced by Compose from the host's environment when the file is "
                "read; write $$ for the container's shell, or pass the value through `environment:`",
            )


def check_secrets(services: dict, problems: Problems) -> None:
    for sname, service in services.items():
        blocks = [("environment", env_items(service.get("environment")))]
        build = service.get("build")
        if isinstance(build, dict):
            blocks.append(("build.args", env_items(build.get("args"))))
        for block, items in blocks:
            for key, value in items:
                where = f"services.{sname}.{block}.{key}"
                text = "" if value is None else str(value)
                if SECRET_KEY.search(key) and not key.upper().endswith("_FILE"):
                    if not REQUIRED_REF.fullmatch(text):
                        shown = "no value (passed through)" if value is None else "a literal value or a defaulted reference"
                        problems.add(
                            where,
                            f"secret has {shown}: it must be a required reference such as "
                            f"${{{key}:?set {key}}} (set in the environment or the uncommitted .env)",
                        )
                if URL_PASSWORD.search(text):
                    problems.add(where, "URL with a literal password: use ${VAR:?...} for the password")


def check_images(services: dict, problems: Problems) -> None:
    for sname, service in services.items():
        image = service.get("image")
        if not isinstance(image, str) or "build" in service:
            continue  # built locally: its tag is ours
        resolved = resolve_defaults(image)
        if "@sha256:" in resolved:
            continue
        last = resolved.rsplit("/", 1)[-1]
        if ":" not in last:
            problems.add(f"services.{sname}.image", f"{image!r} has no tag: pin a version")
        elif last.rsplit(":", 1)[1] in ("latest", ""):
            problems.add(f"services.{sname}.image", f"{image!r}: pin a version, not latest")


def check_dependencies(services: dict, problems: Problems) -> None:
    for sname, service in services.items():
        for target, condition in depends(service).items():
            where = f"services.{sname}.depends_on.{target}"
            if target not in services:
                problems.add(where, "no such service")
                continue
            other = services[target]
            if condition == "service_healthy" and not has_healthcheck(other):
                problems.add(where, f"service_healthy, but {target} has no healthcheck")
            if condition == "service_completed_successfully" and str(
                other.get("restart", "no")
            ) in ("always", "unless-stopped"):
                problems.add(where, f"service_completed_successfully, but {target} restarts forever")
    # cycles
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for target in depends(services[name]):
            if target not in services:
                continue
            if state.get(target) == 1:
                problems.add(f"services.{name}.depends_on", "cycle: " + " -> ".join(trail + [target]))
            elif target not in state:
                visit(target, trail + [target])
        state[name] = 2

    for name in services:
        if name not in state:
            visit(name, [name])


def check_ports(services: dict, problems: Problems) -> None:
    seen: dict[tuple[str, str, str], str] = {}
    for sname, service in services.items():
        for n, port in enumerate(service.get("ports") or []):
            where = f"services.{sname}.ports[{n}]"
            if isinstance(port, dict):
                published = port.get("published")
                if published is None:
                    continue
                key = (
                    resolve_defaults(str(port.get("host_ip", ""))),
                    resolve_defaults(str(published)),
                    str(port.get("protocol", "tcp")),
                )
            else:
                spec = resolve_defaults(str(port))
                spec, _, proto = spec.partition("/")
                parts = spec.rsplit(":", 2)
                if len(parts) < 2:
                    continue  # container port only: Docker picks the host port
                host_ip = parts[0] if len(parts) == 3 else ""
                key = (host_ip, parts[-2], proto or "tcp")
            owner = seen.get(key)
            if owner:
                host = f"{key[0]}:{key[1]}" if key[0] else key[1]
                problems.add(where, f"host port {host}/{key[2]} is also published by {owner}")
            else:
                seen[key] = sname


def check_project(services: dict, problems: Problems) -> dict:
    def runs(service: dict, sub: str) -> bool:
        words = as_words(service.get("command"))
        entry = as_words(service.get("entrypoint"))
        if entry and entry[-1] != "restock":
            return False
        return bool(words) and words[0] == sub

    gateways = sorted(n for n, s in services.items() if runs(s, "gateway"))
    workers = sorted(n for n, s in services.items() if runs(s, "worker"))
    migrates = sorted(n for n, s in services.items() if runs(s, "migrate") and not s.get("profiles"))
    temporals = sorted(
        n for n, s in services.items() if resolve_defaults(str(s.get("image", ""))).startswith("temporalio/server:")
    )
    attribute_setup = sorted(
        n
        for n, s in services.items()
        if "search-attribute create" in " ".join(as_words(s.get("command")) + as_words(s.get("entrypoint")))
    )
    factories = sorted(n for n, s in services.items() if runs(s, "factory"))

    if len(gateways) < 2:
        problems.add("services", f"need at least two `restock gateway` services, found {gateways or 'none'}")
    if len(workers) < 2:
        problems.add("services", f"need at least two `restock worker` services, found {workers or 'none'}")
    if len(migrates) != 1:
        problems.add("services", f"need exactly one `restock migrate` service (no profile), found {migrates or 'none'}")
    if len(temporals) != 1:
        problems.add("services", f"need exactly one Temporal server (temporalio/server image), found {temporals or 'none'}")
    if not attribute_setup:
        problems.add("services", "no service creates the search attributes (`temporal operator search-attribute create`)")
    else:
        text = " ".join(" ".join(as_words(services[n].get("command"))) for n in attribute_setup)
        for attribute in ("RestockSku", "RestockState"):
            if attribute not in text:
                problems.add(f"services.{attribute_setup[0]}", f"does not create the search attribute {attribute}")
    if not factories:
        problems.add("services", "no `restock factory` simulator service")

    required = {}
    if len(temporals) == 1:
        required[temporals[0]] = "service_healthy"
        if not has_healthcheck(services[temporals[0]]):
            problems.add(f"services.{temporals[0]}", "the Temporal server needs a healthcheck")
    if len(migrates) == 1:
        required[migrates[0]] = "service_completed_successfully"
    for name in attribute_setup:
        required[name] = "service_completed_successfully"
    for sname in gateways + workers:
        deps = depends(services[sname])
        for target, condition in required.items():
            got = deps.get(target)
            if got != condition:
                problems.add(
                    f"services.{sname}.depends_on",
                    f"must wait for {target} with condition {condition}"
                    + (f" (has {got})" if got else " (missing)"),
                )
    for sname in gateways:
        if not has_healthcheck(services[sname]):
            problems.add(f"services.{sname}", "gateway needs a healthcheck (GET /healthz)")
    return {"gateways": gateways, "workers": workers}


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: check-compose.py FILE", file=sys.stderr)
        return 2
    path = Path(argv[0])
    problems = Problems()
    try:
        # Round-trip mode: unlike "safe" it also rejects a duplicate key in a mapping that has a
        # merge key (<<), as Compose does.
        doc = plain(YAML(typ="rt").load(path))
    except (OSError, YAMLError) as exc:
        reason = str(exc).split("\n\nTo suppress this check", 1)[0]
        print(f"check-compose: {path}: cannot read it as YAML: {reason}", file=sys.stderr)
        return 1
    if not isinstance(doc, dict):
        print(f"check-compose: {path}: not a Compose file (top level is not a mapping)", file=sys.stderr)
        return 1

    package, resource = SCHEMA_RESOURCE
    schema = json.loads(importlib.resources.files(package).joinpath(resource).read_text(encoding="utf-8"))
    version = importlib.metadata.version(SCHEMA_PACKAGE)

    check_schema(doc, schema, problems)
    check_interpolation(doc, problems)
    services = doc.get("services") if isinstance(doc.get("services"), dict) else {}
    services = {str(k): v for k, v in services.items() if isinstance(v, dict)}
    summary = {"gateways": [], "workers": []}
    if services:
        check_secrets(services, problems)
        check_images(services, problems)
        check_dependencies(services, problems)
        check_ports(services, problems)
        summary = check_project(services, problems)
    else:
        problems.add("services", "no services")

    if problems.items:
        for item in problems.items:
            print(f"check-compose: {path}: {item}", file=sys.stderr)
        print(f"check-compose: FAILED: {len(problems.items)} problem(s) in {path}", file=sys.stderr)
        return 1
    print(
        f"check-compose: OK {path.name}: compose-spec schema ({SCHEMA_PACKAGE} {version}) and project rules; "
        f"{len(services)} services, gateways {', '.join(summary['gateways'])}, workers {', '.join(summary['workers'])}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
