#!/usr/bin/env python3
"""Lints, renders and validates the Helm chart with real tools, and prints JSON for tests/chart.rs.

Helm is the real Helm v4 Go SDK through PyPI `helm-python-sdk` (no helm binary, no cluster, no
network); manifests are checked with PyPI `kubernetes-validate` (the Kubernetes OpenAPI schemas as
JSON Schema, strict: unknown fields fail); alert expressions are parsed with PyPI `promql-parser`.
Run it from the venv that tests/chart/bootstrap.py creates:

    target/chart-tools/venv/bin/python tests/chart/helm_tool.py lint charts/ecr-public-pull-secret-operator
    target/chart-tools/venv/bin/python tests/chart/helm_tool.py render charts/ecr-public-pull-secret-operator \
        -f tests/chart/values/monitoring.yaml --kube-version 1.29.0 --kube-version 1.37.0
    target/chart-tools/venv/bin/python tests/chart/helm_tool.py validate --kube-version 1.37.0 crds/*.yaml

Findings are data: the command exits 0 whenever it could run the tools and the caller decides what
fails. It exits non-zero only on bad usage or a tool that cannot be loaded.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from typing import Any

import helm_python as helm
import kubernetes_validate
import kubernetes_validate.utils as kv_utils
import promql_parser
import yaml

# kubernetes-validate re-reads its (large) schema files for every object; the files never change
# while this runs, so reading each once keeps a whole chart's validation well under a second.
kv_utils.schema_contents = functools.lru_cache(maxsize=None)(kv_utils.schema_contents)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merges value files the way `helm -f a.yaml -f b.yaml` does: maps merge, the rest is
    replaced by the later file."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_values(files: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for path in files:
        with open(path, encoding="utf-8") as f:
            # Helm's own YAML parser, so values read exactly as `helm -f` reads them.
            values = merge(values, helm.values_from_yaml(f.read()))
    return values


def validate_object(obj: dict[str, Any], kube_version: str) -> dict[str, Any]:
    """One object against the Kubernetes schemas; `schema_found` is false for kinds the package has
    no schema for (CRD-defined kinds such as ServiceMonitor)."""
    result: dict[str, Any] = {"kube_version": kube_version, "schema_found": True, "error": None}
    try:
        result["validated_against"] = kubernetes_validate.validate(obj, kube_version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        result["error"] = f"{path}: {e.message}"
    except kubernetes_validate.SchemaNotFoundError:
        result["schema_found"] = False
    return result


def promql_selectors(expr: str) -> dict[str, Any]:
    """Parses a PromQL expression; returns its vector selectors (metric name and matchers), the
    functions it calls, and the top-level operator with its right-hand number (the alert threshold),
    or the parse error."""
    try:
        ast = promql_parser.parse(expr)
    except ValueError as e:
        return {"error": str(e)}
    selectors: list[dict[str, Any]] = []
    functions: list[str] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            selectors.append(
                {
                    "metric": node.name,
                    "matchers": [
                        {"label": m.name, "op": str(m.op).split(".")[-1], "value": m.value}
                        for m in node.matchers.matchers
                    ],
                }
            )
        elif isinstance(node, promql_parser.Call):
            functions.append(node.func.name)
        return True

    promql_parser.walk(ast, visit)
    top: dict[str, Any] = {"op": None, "rhs": None}
    if isinstance(ast, promql_parser.BinaryExpr):
        top["op"] = str(ast.op)
        if isinstance(ast.rhs, promql_parser.NumberLiteral):
            top["rhs"] = ast.rhs.val
    return {"error": None, "selectors": selectors, "functions": functions, **top}


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def cmd_lint(args: argparse.Namespace) -> dict[str, Any]:
    report = helm.lint(
        args.chart,
        load_values(args.values),
        strict=True,
        namespace=args.namespace,
        kube_version=f"v{args.kube_version.lstrip('v')}",
    )
    return report


def cmd_render(args: argparse.Namespace) -> dict[str, Any]:
    values = load_values(args.values)
    out: dict[str, Any] = {"helm_sdk_version": helm.helm_sdk_version()}
    with helm.Chart.load(args.chart) as chart:
        # `helm install` checks the merged values against values.schema.json before rendering.
        try:
            chart.validate_schema(chart.merge_values(values))
        except helm.HelmValuesError as e:
            out["schema_error"] = str(e)
            return out
        manifests = chart.render(
            values, name=args.release, namespace=args.namespace, is_install=True
        )
        out["crds"] = [{"filename": c["filename"], "data": c["data"]} for c in chart.crds]
    prefix = f"{args.chart_name}/templates/"
    out["notes"] = manifests.pop(prefix + "NOTES.txt", None)
    objects = []
    for template, text in sorted(manifests.items()):
        for obj in documents(text):
            entry: dict[str, Any] = {"template": template.removeprefix(prefix), "object": obj}
            entry["validation"] = [validate_object(obj, v) for v in args.kube_version]
            if obj.get("kind") == "PrometheusRule":
                entry["promql"] = {
                    rule.get("alert") or rule.get("record"): promql_selectors(str(rule.get("expr")))
                    for group in obj.get("spec", {}).get("groups", [])
                    for rule in group.get("rules", [])
                }
            objects.append(entry)
    out["objects"] = objects
    out["crd_validation"] = [
        {"filename": c["filename"], **validate_object(obj, v)}
        for c in out["crds"]
        for obj in documents(c["data"])
        for v in args.kube_version
    ]
    return out


def cmd_validate(args: argparse.Namespace) -> dict[str, Any]:
    results = []
    for path in args.files:
        with open(path, encoding="utf-8") as f:
            for obj in documents(f.read()):
                results.append({"file": path, **validate_object(obj, args.kube_version)})
    return {"results": results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    lint = sub.add_parser("lint", help="helm lint --strict")
    lint.add_argument("chart")
    lint.add_argument("-f", "--values", action="append", default=[])
    lint.add_argument("--namespace", default="ecr-public-pull-secret-operator")
    lint.add_argument("--kube-version", default="1.37.0")
    lint.set_defaults(run=cmd_lint)

    render = sub.add_parser("render", help="helm template, plus validation of each object")
    render.add_argument("chart")
    render.add_argument("-f", "--values", action="append", default=[])
    render.add_argument("--release", default="epps")
    render.add_argument("--namespace", default="ecr-public-pull-secret-operator")
    render.add_argument("--chart-name", default="ecr-public-pull-secret-operator")
    render.add_argument(
        "--kube-version",
        action="append",
        default=[],
        help="validate every object against this Kubernetes version (repeatable)",
    )
    render.set_defaults(run=cmd_render)

    validate = sub.add_parser("validate", help="kubernetes-validate --strict on YAML files")
    validate.add_argument("--kube-version", required=True)
    validate.add_argument("files", nargs="+")
    validate.set_defaults(run=cmd_validate)

    args = parser.parse_args()
    json.dump(args.run(args), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
