/**
 * @module
 * The console's page at `/console`, rendered by the worker with Hono JSX. It
 * is only a shell: it holds no registry data (the admin token lives in the
 * tab's sessionStorage, which a page load cannot send), so the client script
 * signs in and reads everything through the admin API with the bearer token.
 * The script and stylesheet are Workers static assets (`build/console-assets`,
 * built by `scripts/build-console.ts`); nothing comes from another origin.
 */
import { Hono } from "hono";

/** What the shell allows: its own script, styles, API calls and local images; no frames. */
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join("; ");

function Shell() {
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="color-scheme" content="light" />
        <title>Pinion console</title>
        <link rel="stylesheet" href="/console/app.css" />
        <script type="module" src="/console/app.js"></script>
      </head>
      <body>
        <div id="app">
          <noscript>
            The Pinion console needs JavaScript: it reads the admin API from this tab.
          </noscript>
        </div>
      </body>
    </html>
  );
}

/** `GET /console` (and `/console/`): the shell, never cached, with a strict CSP. */
export function consoleRoutes(): Hono {
  const app = new Hono();
  app.get("/", (c) => {
    c.header("content-security-policy", CONTENT_SECURITY_POLICY);
    c.header("cache-control", "no-store");
    c.header("referrer-policy", "no-referrer");
    c.header("x-content-type-options", "nosniff");
    return c.html(`<!doctype html>${(<Shell />).toString()}`);
  });
  return app;
}
