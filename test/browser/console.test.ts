/**
 * The web console in a real browser: Debian's Chromium driven by
 * playwright-core against `npm start`'s server (seeded demo models, a fresh
 * local R2, its own process group). Signs in, reads the models, runs try-it
 * and checks its numbers against the API's own answer, promotes with a
 * canary and a shadow through the form, rolls back, signs out; a wrong token
 * is refused. Every page is scanned with axe (no serious or critical
 * violations) and screenshotted into test-results/console/ (or
 * PINION_BROWSER_OUTPUT) for review.
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import AxeBuilder from "@axe-core/playwright";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { root, startDevServer, type DevServer } from "../../scripts/lib/dev-server";

const CHROMIUM = process.env.PINION_CHROMIUM || "/usr/bin/chromium";
const OUTPUT =
  process.env.PINION_BROWSER_OUTPUT || fileURLToPath(new URL("test-results/console/", root));
const TOKEN = "console-test-token";
/** The issue's budget for the first view (page, script, stylesheet), compressed. */
const FIRST_VIEW_GZIP_BYTES = 150 * 1024;

describe("the web console in Chromium", () => {
  let server: DevServer;
  let persistTo: string;
  let browser: Browser;
  let page: Page;
  const firstView: { url: string; gzip: number }[] = [];

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(
        `no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set PINION_CHROMIUM)`,
      );
    }
    await mkdir(OUTPUT, { recursive: true });
    persistTo = await mkdtemp(join(tmpdir(), "pinion-console-"));
    server = await startDevServer(persistTo, [
      "--var",
      `PINION_ADMIN_TOKEN:${TOKEN}`,
      // Promotions and shadow totals visible at once, so the pages show them without waiting.
      "--var",
      "ALIAS_TTL_MS:0",
      "--var",
      "SHADOW_FLUSH_MS:0",
    ]);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      // Root in CI containers cannot use Chromium's sandbox.
      args: process.getuid?.() === 0 ? ["--no-sandbox"] : [],
    });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    page = await context.newPage();
    page.on("pageerror", (error) => console.error(`page error: ${error.message}`));
  });

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    if (persistTo) await rm(persistTo, { recursive: true, force: true });
  });

  async function check(name: string): Promise<void> {
    await page.screenshot({ path: join(OUTPUT, `${name}.png`), fullPage: true });
    const results = await new AxeBuilder({ page })
      .withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"])
      .analyze();
    const serious = results.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map(
        (v) =>
          `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`,
      );
    expect(serious, `axe on ${name}`).toEqual([]);
  }

  async function adminGet<T>(path: string): Promise<T> {
    const response = await fetch(`${server.base}/admin/${path}`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(response.status, path).toBe(200);
    return (await response.json()) as T;
  }

  it("loads the first view within 150 KB gzip, from the worker alone", async () => {
    const origin = new URL(server.base).origin;
    const foreign: string[] = [];
    const pending: Promise<void>[] = [];
    page.on("response", (response) => {
      if (new URL(response.url()).origin !== origin) foreign.push(response.url());
      pending.push(
        response.body().then(
          (body) => void firstView.push({ url: response.url(), gzip: gzipSync(body).byteLength }),
          () => undefined,
        ),
      );
    });
    await page.goto(`${server.base}/console`);
    await page.getByLabel("Admin token").waitFor();
    await Promise.all(pending);
    page.removeAllListeners("response");
    expect(foreign).toEqual([]);
    expect(firstView.map((r) => new URL(r.url).pathname).sort()).toEqual([
      "/console",
      "/console/app.css",
      "/console/app.js",
    ]);
    const total = firstView.reduce((sum, r) => sum + r.gzip, 0);
    console.log(
      `first view: ${(total / 1024).toFixed(1)} KiB gzip (${firstView.map((r) => `${new URL(r.url).pathname} ${(r.gzip / 1024).toFixed(1)} KiB`).join(", ")})`,
    );
    expect(total).toBeLessThanOrEqual(FIRST_VIEW_GZIP_BYTES);
  });

  it("refuses a wrong token and keeps nothing", async () => {
    await page.getByLabel("Admin token").fill("not-the-token");
    await page.getByRole("button", { name: "Sign in" }).click();
    const alert = page.getByRole("alert");
    await expect.poll(() => alert.textContent()).toContain("401");
    expect(await alert.textContent()).toContain("missing or wrong admin token");
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    await check("01-sign-in-refused");
  });

  it("signs in and lists the demo models", async () => {
    await page.getByLabel("Admin token").fill(TOKEN);
    await page.getByRole("button", { name: "Sign in" }).click();
    const table = page.getByTestId("models");
    await table.waitFor();
    const { models } = await adminGet<{ models: string[] }>("models");
    expect(models).toEqual(
      expect.arrayContaining(["simple", "digits-mlp", "digits-cnn", "text-small"]),
    );
    for (const name of models) {
      const row = table.locator(`tr[data-model="${name}"]`);
      const { versions } = await adminGet<{ versions: unknown[] }>(`models/${name}/versions`);
      expect(await row.locator("td").nth(0).textContent(), name).toBe(String(versions.length));
    }
    expect(await page.evaluate(() => sessionStorage.getItem("pinion.console.token"))).toBe(TOKEN);
    await check("02-models");
  });

  it("shows simple's versions, aliases and live-traffic state", async () => {
    await page.getByRole("link", { name: "simple", exact: true }).click();
    await page.getByRole("heading", { level: 1, name: "simple" }).waitFor();
    const rows = page.getByTestId("versions").locator("tbody tr");
    await expect.poll(() => rows.count()).toBe(2);
    const { versions } = await adminGet<{
      versions: { version: number; sha256: string; runtime: string }[];
    }>("models/simple/versions");
    for (const v of versions) {
      const row = page.locator(`tr[data-version="${v.version}"]`);
      expect(await row.textContent()).toContain(v.sha256.slice(0, 12));
      expect(await row.textContent()).toContain(v.runtime);
    }
    // The int8 version's accuracy report opens.
    await page.locator('tr[data-version="2"] summary').click();
    await expect.poll(() => page.locator('tr[data-version="2"] dl.report').isVisible()).toBe(true);
    await page.getByTestId("no-aliases").waitFor();
    // Without a metrics source: the empty state; with one: charts (or the wait for a first point).
    await expect
      .poll(
        async () =>
          (await page.getByTestId("metrics-empty").count()) +
          (await page.getByTestId("charts").count()) +
          (await page.getByTestId("metrics-collecting").count()),
      )
      .toBe(1);
    await check("03-model-simple");
  });

  it("runs try-it on version 1 and shows the API's own numbers", async () => {
    await page.getByRole("link", { name: "Try it" }).click();
    await page.getByLabel("Send to").selectOption("/versions/1");
    const cases = JSON.parse(
      await readFile(new URL("fixtures/seed-simple/cases.json", root), "utf8"),
    ) as { inputs: number[][] };
    const input = cases.inputs[0]!;
    const box = page.getByRole("textbox", { name: /Values/ });
    await box.fill(input.join(", "));
    await page.getByRole("button", { name: "Run inference" }).click();
    const result = page.getByTestId("result");
    await result.waitFor();
    expect(await result.locator('[data-header="x-pinion-model"]').textContent()).toBe("simple@1");
    expect(await result.locator('[data-header="x-pinion-runtime"]').textContent()).toBe("ort");
    const shown = (await result.getByTestId("values").locator("li").allTextContents()).map(Number);

    const direct = await fetch(`${server.base}/v2/models/simple/versions/1/infer`, {
      method: "POST",
      body: JSON.stringify({
        inputs: [{ name: "input", shape: [1, 10], datatype: "FP32", data: input }],
      }),
    });
    const answer = (await direct.json()) as { outputs: { data: number[] }[] };
    expect(shown).toEqual(answer.outputs[0]!.data);
    await check("04-try-it");

    // Explain: KernelSHAP with a fixed seed, so the bars are the API's own attributions.
    await page.getByRole("button", { name: "Explain" }).click();
    const explanation = page.getByTestId("explanation");
    await explanation.getByTestId("attributions").waitFor();
    expect(await explanation.getByTestId("method").textContent()).toBe("shap");
    const bars = explanation.getByTestId("attributions").locator("li");
    const barValues = (await bars.evaluateAll((items) =>
      items.map((li) => [
        Number(li.getAttribute("data-index")),
        Number(li.getAttribute("data-value")),
      ]),
    )) as [number, number][];
    const explained = await fetch(`${server.base}/v2/models/simple/versions/1/explain`, {
      method: "POST",
      body: JSON.stringify({
        inputs: [{ name: "input", shape: [1, 10], datatype: "FP32", data: input }],
        parameters: { method: "shap", seed: 1 },
      }),
    });
    const attributions = (
      (await explained.json()) as { outputs: { name: string; data: number[] }[] }
    ).outputs
      .find((o) => o.name === "attributions")!
      .data.flat();
    const largest = attributions
      .map((value, index) => [index, value] as [number, number])
      .sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]))
      .slice(0, 10);
    expect(barValues).toEqual(largest);
    await check("04c-try-it-explain");
  });

  it("turns an uploaded image into digits-cnn's input and shows its top-k", async () => {
    await page.evaluate(() => (location.hash = "#/models/digits-cnn/try"));
    await page.getByRole("heading", { level: 1, name: "digits-cnn: try it" }).waitFor();
    const testset = JSON.parse(
      await readFile(new URL("fixtures/digits-cnn/testset.json", root), "utf8"),
    ) as { inputs: number[][][][]; labels: number[] };
    const pixels = testset.inputs[0]!.flat(2);
    // The first test image as an 8×8 grey PNG, made by the browser itself.
    const png = await page.evaluate(async (values: number[]) => {
      const canvas = new OffscreenCanvas(8, 8);
      const context = canvas.getContext("2d")!;
      const image = context.createImageData(8, 8);
      values.forEach((v, i) => {
        const grey = Math.round(v * 255);
        image.data.set([grey, grey, grey, 255], i * 4);
      });
      context.putImageData(image, 0, 0);
      const blob = await canvas.convertToBlob({ type: "image/png" });
      return [...new Uint8Array(await blob.arrayBuffer())];
    }, pixels);
    await page.getByLabel(/Image file/).setInputFiles({
      name: "seven.png",
      mimeType: "image/png",
      buffer: Buffer.from(png),
    });
    const box = page.getByRole("textbox", { name: /Values/ });
    await expect.poll(async () => (await box.inputValue()).split(",").length).toBe(64);
    const read = (await box.inputValue()).split(",").map(Number);
    read.forEach((v, i) => expect(Math.abs(v - pixels[i]!)).toBeLessThanOrEqual(1 / 255));

    await page.getByRole("button", { name: "Run inference" }).click();
    const result = page.getByTestId("result");
    await result.waitFor();
    // A fresh form for this model: the default target, not the version chosen for simple.
    expect(await result.locator('[data-header="x-pinion-model"]').textContent()).toBe(
      "digits-cnn@2",
    );
    const top = await result.getByTestId("topk").locator("li").first().textContent();
    expect(top).toMatch(new RegExp(`^class ${testset.labels[0]}: `));
    const direct = await fetch(`${server.base}/v2/models/digits-cnn/infer`, {
      method: "POST",
      body: JSON.stringify({
        inputs: [{ name: "input", shape: [1, 1, 8, 8], datatype: "FP32", data: read }],
      }),
    });
    const answer = (await direct.json()) as { outputs: { data: number[] }[] };
    const shown = (await result.getByTestId("values").locator("li").allTextContents()).map(Number);
    expect(shown).toEqual(answer.outputs[0]!.data);
    await check("04b-try-it-image");

    // Explain an image: occlusion, drawn as a heatmap over the 8×8 input.
    await page.getByRole("button", { name: "Explain" }).click();
    const heatmap = page.getByTestId("explanation").getByTestId("heatmap");
    await heatmap.waitFor();
    expect(await page.getByTestId("explanation").getByTestId("method").textContent()).toBe(
      "occlusion",
    );
    const cells = (await heatmap
      .locator("span")
      .evaluateAll((spans) => spans.map((s) => Number(s.getAttribute("data-value"))))) as number[];
    expect(cells).toHaveLength(64);
    expect(cells.some((v) => v !== 0)).toBe(true);
    await check("04d-try-it-heatmap");
    await page.evaluate(() => (location.hash = "#/models/simple"));
    await page.getByRole("heading", { level: 1, name: "simple" }).waitFor();
  });

  /** Asks for the dry run, checks the plan and returns its gates' text, then confirms. */
  async function planAndConfirm(formButton: string, expectedTo: string): Promise<string> {
    await page.getByRole("button", { name: formButton }).click();
    const plan = page.getByTestId("plan");
    // The plan, or the API's refusal (which then fails the test with its words).
    await plan.or(page.getByTestId("error")).first().waitFor();
    if (await page.getByTestId("error").count()) {
      await page.screenshot({ path: join(OUTPUT, "refused.png"), fullPage: true });
      expect.fail(`refused: ${await page.getByTestId("error").textContent()}`);
    }
    expect(await plan.getByTestId("plan-to").textContent()).toBe(expectedTo);
    const gates = (await plan.textContent()) ?? "";
    await page.getByRole("button", { name: /^Confirm/ }).click();
    await page.getByTestId("applied").waitFor();
    expect(await page.getByTestId("applied").textContent()).toMatch(/^Applied/);
    return gates;
  }

  interface Aliases {
    revision: number;
    aliases: Record<
      string,
      {
        split: { version: number; weight: number }[];
        shadow?: { version: number; fraction: number };
      }
    >;
  }

  it("promotes through the form: the dry run and its gates first, then a canary with a shadow", async () => {
    await page.getByRole("link", { name: "Promote / roll back" }).click();
    // A refusal is shown as the API words it, and nothing is planned.
    await page.getByLabel("Alias", { exact: true }).first().fill("staging");
    await page.getByLabel("Version", { exact: true }).selectOption("2");
    await page.getByLabel(/a canary:/).check();
    await page.getByRole("button", { name: "Plan promotion (dry run)" }).click();
    const refusal = page.getByTestId("error");
    await refusal.waitFor();
    expect(await refusal.textContent()).toBe(
      "Refused (400): alias 'staging' does not exist yet; a canary needs a current version: promote one first",
    );
    expect(await page.getByTestId("plan").count()).toBe(0);
    await page.getByLabel("Alias", { exact: true }).first().fill("production");
    await page.getByLabel(/all of the alias/).check();

    await page.getByLabel("Version", { exact: true }).selectOption("1");
    await page.locator("#promote-reason").fill("first release");
    expect(await planAndConfirm("Plan promotion (dry run)", "v1")).toMatch(/golden: passed/);
    expect((await adminGet<Aliases>("models/simple/aliases")).aliases.production).toEqual({
      split: [{ version: 1, weight: 10_000 }],
    });

    await page.getByLabel("Version", { exact: true }).selectOption("2");
    await page.getByLabel(/a canary:/).check();
    await page.getByLabel("Canary share (%)").fill("10");
    await page.locator("#promote-reason").fill("canary the int8 version");
    await planAndConfirm("Plan promotion (dry run)", "v1 (90%) + v2 (10%)");

    // A shadow on top: the API takes canary and shadow as separate changes, and says so.
    await page.getByLabel(/a shadow:/).check();
    await page.getByLabel("Shadow share (%)").fill("100");
    await page.locator("#promote-reason").fill("compare the rest");
    await planAndConfirm("Plan promotion (dry run)", "v1 (90%) + v2 (10%), shadow v2 (100%)");

    const drawn = page.getByTestId("current-aliases").getByTestId("alias-production");
    await expect.poll(() => drawn.textContent()).toContain("shadow v2 100%");
    expect(await drawn.textContent()).toContain("v1 90%");
    expect(await drawn.textContent()).toContain("v2 10%");
    expect((await adminGet<Aliases>("models/simple/aliases")).aliases.production).toEqual({
      split: [
        { version: 1, weight: 9_000 },
        { version: 2, weight: 1_000 },
      ],
      shadow: { version: 2, fraction: 1 },
    });
    await check("05-promote");
  });

  it("shows the split, the audit entry and shadow divergence on the model page", async () => {
    // Traffic for the shadow to compare: each request is mirrored to version 2.
    for (let i = 0; i < 20; i++) {
      const response = await fetch(`${server.base}/v2/models/simple/infer`, {
        method: "POST",
        headers: { "x-pinion-key": `caller-${i}` },
        body: JSON.stringify({
          inputs: [
            { name: "input", shape: [1, 10], datatype: "FP32", data: new Array(10).fill(i / 20) },
          ],
        }),
      });
      expect(response.status, await response.text()).toBe(200);
    }
    await page.getByRole("link", { name: "Overview" }).click();
    await page.getByTestId("alias-production").waitFor();
    expect(await page.getByTestId("alias-production").textContent()).toContain("v2 10%");
    const history = page.getByTestId("history");
    const newest = history.locator("li[data-revision]").first();
    expect(await newest.getAttribute("data-revision")).toBe("3");
    expect(await newest.textContent()).toContain(
      "v1 (90%) + v2 (10%) → v1 (90%) + v2 (10%), shadow v2 (100%)",
    );
    expect(await newest.textContent()).toContain("compare the rest");
    const canary = history.locator('li[data-revision="2"]');
    expect(await canary.textContent()).toContain("v1 → v1 (90%) + v2 (10%)");
    expect(await canary.textContent()).toContain("canary the int8 version");
    expect(await canary.textContent()).toMatch(/golden: passed/);
    const { records } = await adminGet<{ records: { actor: string }[] }>("models/simple/history");
    expect(await newest.textContent()).toContain(`by ${records.at(-1)!.actor}`);
    // Shadow totals reach R2 after the answers; reload until the page shows them.
    await expect
      .poll(
        async () => {
          await page.reload();
          await page.getByRole("heading", { name: "Shadow divergence" }).waitFor();
          return page.getByTestId("shadow").count();
        },
        { timeout: 30_000, interval: 1000 },
      )
      .toBe(1);
    const { reports } = await adminGet<{ reports: { samples: number }[] }>("models/simple/shadow");
    expect(await page.getByTestId("shadow").locator("tbody tr").count()).toBe(reports.length);
    await page.getByTestId("alias-production").waitFor();
    await check("06-model-canary");

    // A narrow screen: one column, nothing wider than the viewport.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.getByTestId("alias-production").waitFor();
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(
      390,
    );
    await check("07-model-narrow");
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it("rolls back through the form", async () => {
    await page.getByRole("link", { name: "Promote / roll back" }).click();
    await page.getByTestId("current-aliases").waitFor();
    await page.locator("#rollback-alias").selectOption("production");
    await page.locator("#rollback-reason").fill("error budget");
    await planAndConfirm("Plan rollback (dry run)", "v1 (90%) + v2 (10%)");
    expect((await adminGet<Aliases>("models/simple/aliases")).aliases.production).toEqual({
      split: [
        { version: 1, weight: 9_000 },
        { version: 2, weight: 1_000 },
      ],
    });
    await page.getByRole("link", { name: "Overview" }).click();
    const newest = page.getByTestId("history").locator("li[data-revision]").first();
    await newest.waitFor();
    expect(await newest.textContent()).toContain("rollback (undoing #3)");
    expect(await newest.textContent()).toContain("error budget");
    await check("08-rolled-back");
  });

  it("signs out: the token leaves the tab and pages need it again", async () => {
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    expect(await page.evaluate(() => sessionStorage.getItem("pinion.console.token"))).toBe(null);
    await page.goto(`${server.base}/console#/models/simple`);
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    expect(await page.getByTestId("versions").count()).toBe(0);
    await check("09-signed-out");
  });
});
