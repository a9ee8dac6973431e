/**
 * @module
 * Waiting on work that another request started (a shared model load, a turn
 * in a per-model queue). workerd cancels a request as hung when it waits with
 * nothing of its own pending — and a promise that another request's I/O will
 * settle is not its own. So the waiter keeps a short timer of its own running
 * until the shared work settles.
 */

const TICK_MS = 25;

export async function awaitShared<T>(shared: Promise<T>): Promise<T> {
  let settled = false;
  const done = shared.then(
    () => void (settled = true),
    () => void (settled = true),
  );
  while (!settled) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([done, new Promise((resolve) => (timer = setTimeout(resolve, TICK_MS)))]);
    if (timer !== undefined) clearTimeout(timer);
  }
  return shared;
}
