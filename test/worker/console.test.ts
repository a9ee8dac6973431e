/**
 * The console's page as the worker serves it: a shell with a strict CSP that
 * loads the script and stylesheet from this origin and holds no registry data
 * (the client reads everything through the admin API with the tab's token).
 */
import { describe, expect, it } from "vitest";
import { api, publishFixture } from "./helpers";

describe("GET /console", () => {
  it("serves the shell: same-origin assets only, no data, never cached", async () => {
    await publishFixture("console-shell", "seed-simple/simple_model.onnx", 1);
    const response = await api("/console");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/html/);
    expect(response.headers.get("cache-control")).toBe("no-store");
    const csp = response.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    const html = await response.text();
    expect(html).toMatch(/^<!doctype html><html lang="en">/);
    expect(html).toContain('<script type="module" src="/console/app.js"></script>');
    expect(html).toContain('<link rel="stylesheet" href="/console/app.css"/>');
    expect(html).not.toMatch(/https?:\/\//);
    expect(html).not.toContain("console-shell");
  });
});
