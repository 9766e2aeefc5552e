// API keys: create one (shown once, with a copy button), list them, revoke one.
import { call } from "../api.js";
import { announce, errorBox, field, h, when } from "../dom.js";

function newKeyPanel(name, key) {
  const code = h("code", { id: "new-key", class: "secret" }, key);
  const copied = h("span", { class: "muted", "aria-live": "polite" });
  const copy = h("button", { type: "button", onclick: async () => {
    try {
      await navigator.clipboard.writeText(key);
      copied.textContent = "Copied.";
    } catch {
      const range = document.createRange();
      range.selectNodeContents(code);
      window.getSelection().removeAllRanges();
      window.getSelection().addRange(range);
      copied.textContent = "Selected: press Ctrl+C to copy.";
    }
  } }, "Copy key");
  return h("section", { class: "card notice", "aria-labelledby": "new-key-heading" },
    h("h2", { id: "new-key-heading" }, `New key “${name}”`),
    h("p", {}, "Copy this key now and store it safely: it will not be shown again."),
    h("p", { class: "key-line" }, code, " ", copy, " ", copied),
  );
}

function confirmRevoke(key) {
  // A modal <dialog>: focus moves into it, Escape cancels, and focus returns afterwards.
  return new Promise((resolve) => {
    const dialog = h("dialog", { "aria-labelledby": "revoke-title" },
      h("h2", { id: "revoke-title" }, `Revoke key “${key.name}”?`),
      h("p", {}, "Programs using it are refused from their next call. This cannot be undone."),
      h("form", { method: "dialog", class: "actions" },
        h("button", { value: "revoke", class: "danger" }, "Revoke key"),
        h("button", { value: "cancel", class: "secondary", autofocus: true }, "Cancel"),
      ),
    );
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "revoke");
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

function keysTable(keys, onRevoke) {
  if (!keys.length) return h("p", {}, "No keys yet.");
  return h("table", {},
    h("caption", {}, "Your keys"),
    h("thead", {}, h("tr", {}, ["Name", "Prefix", "Created", "Last used", "Status", "Actions"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, keys.map((key) => h("tr", {},
      h("th", { scope: "row" }, key.name),
      h("td", {}, h("code", {}, `${key.prefix}…`)),
      h("td", {}, when(key.created_at)),
      h("td", {}, key.last_used_at ? when(key.last_used_at) : "Never"),
      h("td", {}, key.revoked_at ? `Revoked ${when(key.revoked_at)}` : "Active"),
      h("td", {}, key.revoked_at ? "" : h("button", {
        type: "button", class: "danger small", "aria-label": `Revoke ${key.name}`, onclick: () => onRevoke(key),
      }, "Revoke")),
    ))),
  );
}

export async function keysPage(main) {
  const name = h("input", { type: "text", name: "name", maxlength: "100", required: true, autocomplete: "off" });
  const error = errorBox();
  const fresh = h("div");
  const list = h("div");
  const form = h("form", { class: "card inline" },
    field("Key name", name, "For example the program or teammate that will use it."),
    h("button", { type: "submit" }, "Create key"),
    error,
  );

  async function reload() {
    const { keys } = await call("GET", "keys");
    list.replaceChildren(keysTable(keys, revoke));
  }

  async function revoke(key) {
    if (!(await confirmRevoke(key))) return;
    try {
      await call("POST", `keys/${encodeURIComponent(key.id)}/revoke`);
      await reload();
      announce(`Key ${key.name} revoked.`);
      list.querySelector("table")?.focus();
    } catch (failure) {
      error.textContent = failure.message;
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    if (!name.value.trim()) {
      error.textContent = "Give the key a name.";
      name.focus();
      return;
    }
    try {
      const created = await call("POST", "keys", { name: name.value });
      fresh.replaceChildren(newKeyPanel(created.key.name, created.api_key));
      name.value = "";
      // Focus goes to "Copy key" as the panel appears, not after the list reloads: a key press
      // in between would land in the emptied name field and submit it again.
      fresh.querySelector("button").focus();
      announce("Key created. Copy it now: it will not be shown again.");
      await reload();
    } catch (failure) {
      error.textContent = failure.message;
    }
  });

  main.append(
    h("h1", {}, "API keys"),
    h("p", {}, "Send a key in the X-Api-Key header of each call. Keys are shown once, when created."),
    h("section", { "aria-labelledby": "create-heading" }, h("h2", { id: "create-heading" }, "Create a key"), form),
    fresh,
    h("section", { "aria-labelledby": "list-heading" }, h("h2", { id: "list-heading" }, "Keys"), list),
  );
  await reload();
}
