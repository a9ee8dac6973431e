/**
 * @module
 * The core's `MetricsStore` port on the `MONITOR` Durable Object namespace:
 * each model's metrics go to, and are read from, the object named after it.
 */
import type { MetricsStore } from "../core/serving/metrics";
import type { ModelMonitor } from "./model-monitor";

export type MonitorNamespace = DurableObjectNamespace<ModelMonitor>;

export function monitorOf(namespace: MonitorNamespace, model: string) {
  return namespace.get(namespace.idFromName(model));
}

export function monitorMetricsStore(namespace: MonitorNamespace): MetricsStore {
  return {
    write: async (model, entries) => {
      await monitorOf(namespace, model).record(entries);
    },
    read: async (model, query) => monitorOf(namespace, model).report(model, query),
  };
}
