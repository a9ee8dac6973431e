/** Sign-in: an admin token, checked by the admin API itself before it is kept (tab only). */
import { useState } from "hono/jsx/dom";
import { admin } from "./api";
import { ErrorBox, PageHeading } from "./common";

export function SignInPage({
  notice,
  onSignedIn,
}: {
  notice: string | undefined;
  onSignedIn: (token: string) => void;
}) {
  const [token, setTokenText] = useState("");
  const [error, setError] = useState<Error | undefined>(undefined);
  const [busy, setBusy] = useState(false);

  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      // The same check as every admin call: the token is kept only if the API accepts it.
      await admin("models", { token });
      onSignedIn(token);
    } catch (reason) {
      setError(reason as Error);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="narrow">
      <PageHeading>Sign in</PageHeading>
      <p>
        Use an admin token of this worker (<code>PINION_ADMIN_TOKEN</code> or one of{" "}
        <code>PINION_ADMIN_TOKENS</code>; <code>npm start</code> uses <code>dev-admin-token</code>).
        It is kept in this tab only and sent as a bearer token to the admin API.
      </p>
      {notice ? (
        <p class="notice" role="status">
          {notice}
        </p>
      ) : null}
      <form onSubmit={submit}>
        <label for="token">Admin token</label>
        <input
          id="token"
          name="token"
          type="password"
          autocomplete="off"
          required
          value={token}
          onInput={(e: Event) => setTokenText((e.target as HTMLInputElement).value)}
        />
        <button type="submit" disabled={busy}>
          {busy ? "Checking…" : "Sign in"}
        </button>
      </form>
      <ErrorBox error={error} title="Sign-in refused" />
    </section>
  );
}
