// Validates Prometheus Operator objects (ServiceMonitor, PrometheusRule) read as a JSON array on stdin
// with npm `@kubernetes-models/prometheus-operator`, whose validators are generated from
// prometheus-operator's Go API types. kubernetes-validate has no schema for CRD-defined kinds, so
// this is the check of their field types and required fields. It does not reject unknown fields;
// tests/chart.rs checks the fields the chart uses by hand.
//
// Run with the modules installed by tests/chart/bootstrap.py:
//   NODE_PATH=target/chart-tools/node/node_modules node tests/chart/validate_monitoring.mjs < objects.json
// Prints a JSON array with {kind, name, error} per object; exits 0 whenever it could validate.

import { pathToFileURL } from "node:url";
import { readFileSync } from "node:fs";
import path from "node:path";

// ES modules ignore NODE_PATH, and the package exports its models for `import` only, so load the
// two model files by path from the node_modules directory given in NODE_PATH.
const modules = process.env.NODE_PATH;
if (!modules) {
  console.error("NODE_PATH must point at the node_modules directory with the chart test tools");
  process.exit(2);
}
const v1 = path.join(path.resolve(modules), "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1");
const models = {};
for (const kind of ["ServiceMonitor", "PrometheusRule"]) {
  models[kind] = (await import(pathToFileURL(path.join(v1, `${kind}.js`)).href))[kind];
}

const objects = JSON.parse(readFileSync(0, "utf8"));
const results = objects.map((obj) => {
  const Model = obj.apiVersion === "monitoring.coreos.com/v1" ? models[obj.kind] : undefined;
  const result = { kind: obj.kind, name: obj.metadata?.name ?? null, error: null };
  if (Model === undefined) {
    result.error = `no model for ${obj.apiVersion} ${obj.kind}`;
    return result;
  }
  try {
    new Model(obj).validate();
  } catch (e) {
    result.error = e.message;
  }
  return result;
});
console.log(JSON.stringify(results));
