// Signing in and signing up.
import { call } from "../api.js";
import { announce, errorBox, field, h } from "../dom.js";

function credentialsForm({ submitLabel, passwordAutocomplete, passwordHint, onSubmit }) {
  const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true });
  const password = h("input", {
    type: "password", name: "password", autocomplete: passwordAutocomplete, required: true,
  });
  const error = errorBox();
  const button = h("button", { type: "submit" }, submitLabel);
  const form = h("form", { class: "card narrow", novalidate: true },
    field("Email", email),
    field("Password", password, passwordHint),
    error,
    button,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    if (!email.value.trim() || !password.value) {
      error.textContent = "Enter your email address and a password.";
      (email.value.trim() ? password : email).focus();
      return;
    }
    button.disabled = true;
    try {
      await onSubmit(email.value.trim(), password.value);
    } catch (failure) {
      error.textContent = failure.status === 429 && failure.retryAfter
        ? `${failure.message} (Retry-After: ${failure.retryAfter} s)`
        : failure.message;
      password.value = "";
      password.focus();
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

export async function signInPage(main, app) {
  const form = credentialsForm({
    submitLabel: "Sign in",
    passwordAutocomplete: "current-password",
    onSubmit: async (email, password) => {
      const answer = await call("POST", "sign-in", { email, password });
      await app.signedIn(answer, "/");
      announce("Signed in.");
    },
  });
  main.append(
    h("h1", {}, "Sign in"),
    h("p", {}, "Sign in to get API keys, see your credits and usage, and try a photo."),
    form,
    app.session.sign_up_open
      ? h("p", {}, "New here? ", h("a", { href: "/dashboard/sign-up" }, "Create an account"))
      : h("p", { class: "muted" }, "Sign-up is closed on this server: its operator creates accounts."),
  );
}

export async function signUpPage(main, app) {
  main.append(h("h1", {}, "Create an account"));
  if (!app.session.sign_up_open) {
    main.append(
      h("p", {}, "Sign-up is closed on this server: ask its operator for an account."),
      h("p", {}, h("a", { href: "/dashboard/sign-in" }, "Sign in")),
    );
    return;
  }
  main.append(
    h("p", {}, "Your account starts with free previews every month; credits are added by the operator."),
    credentialsForm({
      submitLabel: "Create account",
      passwordAutocomplete: "new-password",
      passwordHint: "At least 8 characters.",
      onSubmit: async (email, password) => {
        const answer = await call("POST", "sign-up", { email, password });
        await app.signedIn(answer, "/");
        announce("Account created. You are signed in.");
      },
    }),
    h("p", {}, "Have an account? ", h("a", { href: "/dashboard/sign-in" }, "Sign in")),
  );
}
