/**
 * @module
 * The core's `MetricsStore` port on the `MONITOR` Durable Object namespace:
 * each model's metrics go to, and are read from, the object named after it.
 */
import { PinionError } from "../core/errors";
import type { MetricsStore } from "../core/serving/metrics";
import type { RolloutControl } from "../core/serving/rollout";
import type { ModelMonitor, RolloutAnswer } from "./model-monitor";

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

/** Rollouts, each driven by its model's monitor (which holds the alarm); errors keep their kind. */
export function monitorRollouts(namespace: MonitorNamespace): RolloutControl {
  const unwrap = async <T>(answer: Promise<RolloutAnswer<T>>): Promise<T> => {
    const a = (await answer) as RolloutAnswer<T>;
    if (a.ok) return a.value;
    throw new PinionError(a.kind, a.message, a.details ? { details: a.details } : {});
  };
  return {
    start: (model, request) => unwrap(monitorOf(namespace, model).startRollout(model, request)),
    status: (model) => unwrap(monitorOf(namespace, model).rolloutStatus(model)),
    pause: (model, actor) => unwrap(monitorOf(namespace, model).pauseRollout(model, actor)),
    resume: (model, actor) => unwrap(monitorOf(namespace, model).resumeRollout(model, actor)),
    abort: (model, actor) => unwrap(monitorOf(namespace, model).abortRollout(model, actor)),
  };
}
