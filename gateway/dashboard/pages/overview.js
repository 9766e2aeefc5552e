// Credits, free previews and the rate limit of the signed-in account.
import { call } from "../api.js";
import { h } from "../dom.js";

export async function overviewPage(main) {
  const account = await call("GET", "overview");
  const rows = [
    ["Total", account.total],
    ["Subscription", account.subscription],
    ["Pay-as-you-go", account.payg],
    ["Enterprise", account.enterprise],
  ];
  main.append(
    h("h1", {}, "Overview"),
    h("p", { class: "muted" }, "Account: ", account.account_name),
    h("section", { class: "cards", "aria-labelledby": "credits-heading" },
      h("h2", { id: "credits-heading" }, "Credits"),
      h("dl", { class: "stats" }, rows.map(([label, value]) => h("div", { class: "stat" }, h("dt", {}, label), h("dd", {}, value)))),
    ),
    h("section", { "aria-labelledby": "limits-heading" },
      h("h2", { id: "limits-heading" }, "Allowances"),
      h("dl", { class: "stats" },
        h("div", { class: "stat" }, h("dt", {}, "Free previews left this month"),
          h("dd", {}, `${account.free_calls_left} of ${account.free_calls_per_month}`)),
        h("div", { class: "stat" }, h("dt", {}, "Rate limit"),
          h("dd", {}, `${account.rate_limit_per_minute} images a minute per key`)),
      ),
    ),
    h("section", { "aria-labelledby": "start-heading" },
      h("h2", { id: "start-heading" }, "Getting started"),
      h("ol", {},
        h("li", {}, h("a", { href: "/dashboard/keys" }, "Create an API key"), " and keep it somewhere safe."),
        h("li", {}, "Make your first request with the ", h("a", { href: "/dashboard/docs" }, "code samples"), "."),
        h("li", {}, h("a", { href: "/dashboard/try" }, "Try a photo"), " here first: previews cost nothing."),
      ),
    ),
  );
}
