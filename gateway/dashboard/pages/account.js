// The signed-in user: change (or, after a sign-in link, choose) the password.
import { call, setCsrf } from "../api.js";
import { errorBox, field, h } from "../dom.js";

export async function accountPage(main, app) {
  const user = app.session.user;
  const current = h("input", { type: "password", autocomplete: "current-password", required: true });
  const next = h("input", { type: "password", autocomplete: "new-password", required: true });
  const error = errorBox();
  const done = h("p", { class: "success", role: "status" });
  const form = h("form", { class: "card narrow" },
    user.has_password ? field("Current password", current) : null,
    field("New password", next, "At least 8 characters. Every other session of yours is signed out."),
    error,
    h("button", { type: "submit" }, user.has_password ? "Change password" : "Set password"),
    done,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    done.textContent = "";
    try {
      const answer = await call("POST", "password", { current_password: current.value, new_password: next.value });
      setCsrf(answer.csrf_token);
      await app.refreshSession();
      current.value = "";
      next.value = "";
      done.textContent = "Password changed. Your other sessions are signed out.";
    } catch (failure) {
      error.textContent = failure.message;
    }
  });
  main.append(
    h("h1", {}, "Account"),
    h("dl", { class: "stats" },
      h("div", { class: "stat" }, h("dt", {}, "Email"), h("dd", {}, user.email)),
      h("div", { class: "stat" }, h("dt", {}, "Account"), h("dd", {}, user.account_name)),
    ),
    h("section", { "aria-labelledby": "password-heading" },
      h("h2", { id: "password-heading" }, user.has_password ? "Change password" : "Choose a password"),
      form,
    ),
  );
}
