/**
 * @module
 * Loaded models kept per isolate, keyed by `name@version`. Bounded by a byte
 * budget and evicted least-recently-used; concurrent first requests for one
 * version share a single load; a failed load is not cached, so the next request
 * tries again.
 */
import { unavailable } from "../errors";
import type { LoadedModel } from "../runtimes/runtime";

export class ModelCache {
  /** Insertion order is recency order: a hit moves the entry to the end. */
  private readonly loaded = new Map<string, LoadedModel>();
  private readonly loading = new Map<string, Promise<LoadedModel>>();
  private held = 0;

  constructor(readonly budgetBytes: number) {}

  get bytesHeld(): number {
    return this.held;
  }

  keys(): string[] {
    return [...this.loaded.keys()];
  }

  has(key: string): boolean {
    return this.loaded.has(key);
  }

  /** Returns the loaded model for `key`, loading it once if needed. */
  async get(key: string, load: () => Promise<LoadedModel>): Promise<LoadedModel> {
    const hit = this.loaded.get(key);
    if (hit) {
      this.loaded.delete(key);
      this.loaded.set(key, hit);
      return hit;
    }
    let pending = this.loading.get(key);
    if (!pending) {
      pending = this.loadAndAdmit(key, load).finally(() => this.loading.delete(key));
      this.loading.set(key, pending);
    }
    return pending;
  }

  private async loadAndAdmit(key: string, load: () => Promise<LoadedModel>): Promise<LoadedModel> {
    const model = await load();
    if (model.bytesHeld > this.budgetBytes) {
      await model.dispose();
      throw unavailable(
        `${key} needs about ${model.bytesHeld} bytes loaded, more than this isolate's model budget of ${this.budgetBytes}`,
      );
    }
    this.loaded.set(key, model);
    this.held += model.bytesHeld;
    await this.evictUntilWithinBudget(key);
    return model;
  }

  private async evictUntilWithinBudget(keep: string): Promise<void> {
    for (const [key, model] of this.loaded) {
      if (this.held <= this.budgetBytes) break;
      if (key === keep) continue;
      this.loaded.delete(key);
      this.held -= model.bytesHeld;
      // A run in flight on the evicted model finishes first: dispose waits for it.
      await model.dispose().catch((error: unknown) => console.error("dispose failed", key, error));
    }
  }
}
