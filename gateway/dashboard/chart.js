// A bar chart of one series per day, drawn as SVG. Screen readers get its summary as the
// image's name; the numbers themselves are in the table beside it.
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

export function barChart({ id, title, days, value, format = String }) {
  const width = 640;
  const height = 180;
  const left = 40;
  const bottom = 24;
  const values = days.map(value);
  const top = Math.max(1, ...values);
  const step = (width - left) / days.length;
  const total = values.reduce((a, b) => a + b, 0);
  const root = svg("svg", {
    id, viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart",
    "aria-label": `${title}, last ${days.length} days: ${format(total)} in all, ${format(values[values.length - 1])} today.`,
  });
  root.append(svg("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, class: "axis" }));
  root.append(svg("text", { x: left - 6, y: 12, "text-anchor": "end", class: "tick" }, format(top)));
  root.append(svg("text", { x: left - 6, y: height - bottom, "text-anchor": "end", class: "tick" }, "0"));
  days.forEach((day, i) => {
    const v = values[i];
    const barHeight = ((height - bottom - 8) * v) / top;
    const bar = svg("rect", {
      x: left + i * step + 2, y: height - bottom - barHeight, width: Math.max(1, step - 4), height: barHeight,
      class: v > 0 ? "bar" : "bar empty", "data-date": day.date, "data-value": v,
    });
    bar.append(svg("title", {}, `${day.date}: ${format(v)}`));
    root.append(bar);
    if ((days.length - 1 - i) % 7 === 0) {
      root.append(svg("text", { x: left + i * step + step / 2, y: height - 6, "text-anchor": "middle", class: "tick" }, day.date.slice(5)));
    }
  });
  return root;
}
