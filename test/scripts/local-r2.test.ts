import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { openLocalR2 } from "../../origin/stores/local-r2";
import { retryTransient } from "../../core/registry/transient";
import { listKeys } from "../../core/registry/store";

describe("local R2", () => {
  it("retries the emulator's bare 500 until the operation goes through, and nothing else", async () => {
    let calls = 0;
    const flaky = async () => {
      calls++;
      if (calls < 3) throw new Error("put: Unspecified error (0)");
      return "written";
    };
    await expect(retryTransient(flaky)).resolves.toBe("written");
    expect(calls).toBe(3);

    let other = 0;
    const refused = async () => {
      other++;
      throw new Error("put: precondition failed (10031)");
    };
    await expect(retryTransient(refused)).rejects.toThrow(/precondition failed/);
    expect(other).toBe(1);

    let always = 0;
    const busy = async () => {
      always++;
      throw new Error("Unspecified error (0)");
    };
    await expect(retryTransient(busy, 3)).rejects.toThrow(/Unspecified error/);
    expect(always).toBe(3);
  });

  it("takes concurrent create-only writes from two processes' worth of emulators on one directory", async () => {
    const dir = await mkdtemp(join(tmpdir(), "pinion-local-r2-"));
    const [a, b] = await Promise.all([openLocalR2(dir), openLocalR2(dir)]);
    try {
      const keys = Array.from({ length: 40 }, (_, i) => `models/m/blobs/${i}`);
      const results = await Promise.all(
        keys.map((key, i) =>
          (i % 2 ? a : b).store.put(key, new TextEncoder().encode(key), {
            onlyIf: { etagDoesNotMatch: "*" },
          }),
        ),
      );
      expect(results.every((r) => r !== null)).toBe(true);
      expect((await listKeys(a.store, "models/m/")).sort()).toEqual([...keys].sort());
      expect(await (await b.store.get(keys[7]!))!.text()).toBe(keys[7]);
    } finally {
      await Promise.all([a.dispose(), b.dispose()]);
      await rm(dir, { recursive: true, force: true });
    }
  });
});
