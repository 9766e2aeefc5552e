// The dashboard's shell: who is signed in, the navigation, and which view a path shows.
import { ApiError, call, setCsrf } from "./api.js";
import { announce, h } from "./dom.js";
import { accountPage } from "./pages/account.js";
import { signInPage, signUpPage } from "./pages/auth.js";
import { docsPage } from "./pages/docs.js";
import { keysPage } from "./pages/keys.js";
import { overviewPage } from "./pages/overview.js";
import { tryPage } from "./pages/try.js";
import { usagePage } from "./pages/usage.js";

const BASE = "/dashboard";
const VIEWS = {
  "/": { title: "Overview", render: overviewPage },
  "/keys": { title: "API keys", render: keysPage },
  "/usage": { title: "Usage", render: usagePage },
  "/try": { title: "Try it", render: tryPage },
  "/docs": { title: "Docs", render: docsPage },
  "/account": { title: "Account", render: accountPage },
  "/sign-in": { title: "Sign in", render: signInPage, public: true },
  "/sign-up": { title: "Create an account", render: signUpPage, public: true },
};

export const app = {
  session: null,
  navigate,
  refreshSession,
  signedIn,
};

function viewPath() {
  const rest = window.location.pathname.slice(BASE.length).replace(/\/+$/, "");
  return rest === "" ? "/" : rest;
}

async function refreshSession() {
  app.session = await call("GET", "session");
  setCsrf(app.session.csrf_token);
  return app.session;
}

// After sign-in, sign-up or a sign-in link: the new session's token, then the page asked for.
async function signedIn(answer, to = "/") {
  setCsrf(answer.csrf_token);
  await refreshSession();
  await navigate(to, { replace: true });
}

function renderShell() {
  const signed = app.session && app.session.signed_in;
  document.getElementById("nav").hidden = !signed;
  const who = document.getElementById("who");
  who.replaceChildren();
  if (signed) {
    who.append(
      h("span", { class: "muted" }, "Signed in as ", h("strong", {}, app.session.user.email)),
      h("button", { type: "button", class: "secondary", onclick: signOut }, "Sign out"),
    );
  }
  for (const link of document.querySelectorAll("#nav a")) {
    const here = new URL(link.href).pathname.replace(/\/+$/, "") === window.location.pathname.replace(/\/+$/, "");
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function signOut() {
  try {
    await call("POST", "sign-out");
  } finally {
    await refreshSession();
    await navigate("/sign-in", { replace: true });
    announce("Signed out.");
  }
}

async function navigate(path, { replace = false } = {}) {
  const url = BASE + (path === "/" ? "/" : path);
  if (replace) window.history.replaceState({}, "", url);
  else window.history.pushState({}, "", url);
  await render();
}

async function render() {
  let path = viewPath();
  let view = VIEWS[path];
  const signed = app.session && app.session.signed_in;
  if (!view) view = { title: "Not found", render: notFound, public: true };
  if (!view.public && !signed) return navigate("/sign-in", { replace: true });
  if (view.public && signed && path !== "/") return navigate("/", { replace: true });
  renderShell();
  const main = document.getElementById("main");
  main.replaceChildren();
  document.title = `${view.title} · ClearBG dashboard`;
  try {
    await view.render(main, app);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      await refreshSession();
      return navigate("/sign-in", { replace: true });
    }
    main.replaceChildren(h("h1", {}, view.title), h("p", { class: "error", role: "alert" }, error.message));
  }
  // Focus goes to the new page's heading, unless the user has already moved it into the page
  // while its data loaded (typing into a field must not be cut off mid-word).
  const heading = main.querySelector("h1");
  if (heading && window.__clearbgRendered && !main.contains(document.activeElement)) {
    heading.tabIndex = -1;
    heading.focus();
  }
  window.__clearbgRendered = true;
}

function notFound(main) {
  main.append(h("h1", {}, "Not found"), h("p", {}, "No such page. ", h("a", { href: `${BASE}/` }, "Go to the overview.")));
}

// Links inside the dashboard switch views without reloading the page.
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[href]");
  if (!link || link.target || link.hasAttribute("download") || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const url = new URL(link.href);
  if (url.origin !== window.location.origin || !url.pathname.startsWith(BASE) || url.pathname.startsWith(`${BASE}/api/`)) return;
  if (url.hash && url.pathname === window.location.pathname) return;
  event.preventDefault();
  navigate(url.pathname.slice(BASE.length) || "/");
});

window.addEventListener("popstate", () => render());

// A one-time link from the operator (clearbg-admin create-user): #sign-in-link=TOKEN. The token
// stays out of the address bar, the history and the server's access log.
async function redeemLink() {
  const match = window.location.hash.match(/^#sign-in-link=([\w-]+)$/);
  if (!match) return false;
  window.history.replaceState({}, "", window.location.pathname);
  try {
    const answer = await call("POST", "sign-in-link", { token: match[1] });
    await signedIn(answer, answer.user.has_password ? "/" : "/account");
    announce(answer.user.has_password ? "Signed in." : "Signed in. Choose a password.");
  } catch (error) {
    await navigate("/sign-in", { replace: true });
    announce(error.message);
    const box = document.querySelector("#main .error");
    if (box) box.textContent = error.message;
  }
  return true;
}

async function start() {
  await refreshSession();
  if (await redeemLink()) return;
  await render();
}

start().catch((error) => {
  document.getElementById("main").replaceChildren(
    h("h1", {}, "ClearBG dashboard"),
    h("p", { class: "error", role: "alert" }, `The dashboard could not start: ${error.message}`),
  );
});
