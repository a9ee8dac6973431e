/**
 * @module
 * Loaded models kept per isolate, keyed by `name@version`. Bounded by a byte
 * budget and evicted least-recently-used; concurrent first requests for one
 * version share a single load; a failed load is not cached, so the next request
 * tries again. A model in use is never disposed under its user: eviction only
 * unlists it, and disposal waits for the last lease to be released.
 */
import { awaitShared } from "../await-shared";
import { unavailable } from "../errors";
import type { LoadedModel } from "../runtimes/runtime";

interface Entry {
  key: string;
  model: LoadedModel;
  users: number;
  evicted: boolean;
  disposed: boolean;
}

/** A model held for one request; call `release` when done with it. */
export interface Lease {
  model: LoadedModel;
  release(): void;
}

/** How often `acquire` retries when its model is evicted before it could be used. */
const ACQUIRE_ATTEMPTS = 3;

export class ModelCache {
  /** Insertion order is recency order: a hit moves the entry to the end. */
  private readonly loaded = new Map<string, Entry>();
  private readonly loading = new Map<string, Promise<Entry>>();
  private held = 0;

  constructor(readonly budgetBytes: number) {}

  /** Bytes held by listed models (evicted models still in use are not counted). */
  get bytesHeld(): number {
    return this.held;
  }

  /** Keys of listed models, least recently used first. */
  keys(): string[] {
    return [...this.loaded.keys()];
  }

  /** Returns the model for `key`, loading it once if needed, without holding it. */
  async get(key: string, load: () => Promise<LoadedModel>): Promise<LoadedModel> {
    return (await this.entry(key, load)).model;
  }

  /** Returns the model for `key` held until `release()`, so eviction cannot dispose it meanwhile. */
  async acquire(key: string, load: () => Promise<LoadedModel>): Promise<Lease> {
    for (let attempt = 0; attempt < ACQUIRE_ATTEMPTS; attempt++) {
      const entry = await this.entry(key, load);
      // Checked and claimed in one synchronous step: disposal is decided synchronously too.
      if (entry.disposed) continue;
      entry.users++;
      let released = false;
      return {
        model: entry.model,
        release: () => {
          if (released) return;
          released = true;
          entry.users--;
          if (entry.evicted && entry.users === 0) this.dispose(entry);
        },
      };
    }
    throw unavailable(
      `${key} kept being evicted before it could run; the isolate is short of memory`,
    );
  }

  private async entry(key: string, load: () => Promise<LoadedModel>): Promise<Entry> {
    const hit = this.loaded.get(key);
    if (hit) {
      this.loaded.delete(key);
      this.loaded.set(key, hit);
      return hit;
    }
    const pending = this.loading.get(key);
    // Another request is loading it: share that load (waiting as workerd allows).
    if (pending) return awaitShared(pending);
    const loading = this.loadAndAdmit(key, load).finally(() => this.loading.delete(key));
    this.loading.set(key, loading);
    return loading;
  }

  private async loadAndAdmit(key: string, load: () => Promise<LoadedModel>): Promise<Entry> {
    const model = await load();
    if (model.bytesHeld > this.budgetBytes) {
      await model.dispose();
      throw unavailable(
        `${key} needs about ${model.bytesHeld} bytes loaded, more than this isolate's model budget of ${this.budgetBytes}`,
      );
    }
    const entry: Entry = { key, model, users: 0, evicted: false, disposed: false };
    this.loaded.set(key, entry);
    this.held += model.bytesHeld;
    for (const [other, victim] of this.loaded) {
      if (this.held <= this.budgetBytes) break;
      if (other === key) continue;
      this.loaded.delete(other);
      this.held -= victim.model.bytesHeld;
      victim.evicted = true;
      if (victim.users === 0) this.dispose(victim);
    }
    return entry;
  }

  /** Unlists every model (a server shutting down); each is disposed once its last lease ends. */
  evictAll(): void {
    for (const entry of this.loaded.values()) {
      entry.evicted = true;
      if (entry.users === 0) this.dispose(entry);
    }
    this.loaded.clear();
    this.held = 0;
  }

  private dispose(entry: Entry): void {
    entry.disposed = true;
    entry.model
      .dispose()
      .catch((error: unknown) => console.error("dispose failed", entry.key, error));
  }
}
