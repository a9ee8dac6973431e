/**
 * @module
 * The console in the browser: a hash router over the pages (sign-in, models,
 * a model's overview, try it, promote), the admin token in this tab's
 * sessionStorage, sign-out. Every read and every change goes through the
 * admin API and the OIP endpoints (api.ts); the page itself holds no data.
 */
import { render, useEffect, useState } from "hono/jsx/dom";
import { clearToken, getToken, onTokenRefused, setToken } from "./api";
import { ModelPage } from "./model";
import { ModelsPage } from "./models";
import { PromotePage } from "./promote";
import { SignInPage } from "./sign-in";
import { TryItPage } from "./try-it";

type Route = { page: "models" } | { page: "model" | "try" | "promote"; name: string };

function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "models" && parts[1]) {
    const tab = parts[2];
    return {
      page: tab === "try" ? "try" : tab === "promote" ? "promote" : "model",
      name: parts[1],
    };
  }
  return { page: "models" };
}

function useRoute(): Route {
  const [route, setRoute] = useState(parseRoute(location.hash));
  useEffect(() => {
    const update = () => setRoute(parseRoute(location.hash));
    addEventListener("hashchange", update);
    return () => removeEventListener("hashchange", update);
  }, []);
  return route;
}

function App() {
  const [signedIn, setSignedIn] = useState(getToken() !== null);
  const [notice, setNotice] = useState<string | undefined>(undefined);
  const route = useRoute();

  useEffect(
    () =>
      onTokenRefused(() => {
        clearToken();
        setSignedIn(false);
        setNotice("The server refused the stored token; sign in again.");
      }),
    [],
  );

  const signOut = () => {
    clearToken();
    setSignedIn(false);
    setNotice("Signed out. The token was removed from this tab.");
    location.hash = "#/";
  };

  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href="#/">
          Pinion console
        </a>
        {signedIn ? (
          <nav aria-label="Main">
            <a href="#/">Models</a>
            <button type="button" class="link" onClick={signOut}>
              Sign out
            </button>
          </nav>
        ) : null}
      </header>
      {/* Model pages are keyed by model, so no form state carries over from another model. */}
      <main id="main">
        {!signedIn ? (
          <SignInPage
            notice={notice}
            onSignedIn={(token) => {
              setToken(token);
              setNotice(undefined);
              setSignedIn(true);
            }}
          />
        ) : route.page === "models" ? (
          <ModelsPage />
        ) : route.page === "try" ? (
          <TryItPage key={route.name} name={route.name} />
        ) : route.page === "promote" ? (
          <PromotePage key={route.name} name={route.name} />
        ) : (
          <ModelPage key={route.name} name={route.name} />
        )}
      </main>
    </>
  );
}

render(<App />, document.getElementById("app")!);
