// Images and credits per day over 30 days, and the latest calls, from the ledger.
import { call } from "../api.js";
import { h, when } from "../dom.js";
import { barChart } from "../chart.js";

export async function usagePage(main) {
  const usage = await call("GET", "usage");
  const days = usage.days;
  const active = days.filter((d) => d.images > 0);
  const credits = (d) => Number.parseFloat(d.credits);
  main.append(
    h("h1", {}, "Usage"),
    h("section", { "aria-labelledby": "per-day-heading" },
      h("h2", { id: "per-day-heading" }, "Last 30 days"),
      h("div", { class: "charts" },
        h("figure", {}, barChart({ id: "images-chart", title: "Images per day", days, value: (d) => d.images }),
          h("figcaption", {}, "Images per day")),
        h("figure", {}, barChart({ id: "credits-chart", title: "Credits per day", days, value: credits, format: (v) => String(Math.round(v * 1e6) / 1e6) }),
          h("figcaption", {}, "Credits per day")),
      ),
      active.length
        ? h("table", { class: "compact" },
          h("caption", {}, "Days with calls"),
          h("thead", {}, h("tr", {}, ["Day", "Images", "Credits"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, active.map((d) => h("tr", {}, h("th", { scope: "row" }, d.date), h("td", {}, d.images), h("td", {}, d.credits)))),
        )
        : h("p", {}, "No calls in the last 30 days."),
    ),
    h("section", { "aria-labelledby": "calls-heading" },
      h("h2", { id: "calls-heading" }, "Latest calls"),
      usage.calls.length
        ? h("table", {},
          h("caption", {}, "The latest calls, newest first"),
          h("thead", {}, h("tr", {}, ["Time", "Key", "Size", "Credits", "Status"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, usage.calls.map((c) => h("tr", {},
            h("td", {}, when(c.time)),
            h("td", {}, c.key_name ? `${c.key_name} (${c.key_prefix}…)` : (c.key_prefix ? `${c.key_prefix}…` : "Try it (dashboard)")),
            h("td", {}, c.size),
            h("td", {}, c.credits),
            h("td", {}, c.status === "refunded" ? "Failed, refunded" : "Succeeded"),
          ))),
        )
        : h("p", {}, "No calls yet."),
    ),
  );
}
