// "Try it": drop or pick a photo, see the cut-out beside it, download it. Previews are free.
import { tryPhoto } from "../api.js";
import { announce, errorBox, field, h } from "../dom.js";

const SIZES = [
  ["preview", "Preview (up to 0.25 MP), free"],
  ["small", "Small (up to 0.25 MP), 1 credit"],
  ["medium", "Medium (up to 1.5 MP), 1 credit"],
  ["hd", "HD (up to 4 MP), 1 credit"],
  ["full", "Full (up to 25 MP), 1 credit"],
];
const FORMATS = [["png", "PNG (transparent)"], ["webp", "WebP (transparent)"], ["jpg", "JPG (on the colour)"]];
const EXTENSIONS = { "image/png": "png", "image/webp": "webp", "image/jpeg": "jpg", "application/zip": "zip" };

function select(name, options) {
  return h("select", { name }, options.map(([value, label]) => h("option", { value }, label)));
}

export async function tryPage(main) {
  const file = h("input", { type: "file", name: "image_file", accept: "image/*", required: true });
  const size = select("size", SIZES);
  const format = select("format", FORMATS);
  const useColour = h("input", { type: "checkbox", name: "use_bg_color" });
  const colour = h("input", { type: "color", name: "bg_color", value: "#ffffff" });
  const error = errorBox();
  const button = h("button", { type: "submit" }, "Remove background");
  const result = h("div", { class: "results", "aria-live": "polite" });
  const drop = h("div", { class: "dropzone" },
    field("Photo", file, "Drop a photo here, or choose one (JPG, PNG or WebP, up to 22 MB)."),
  );
  let original = null;
  const urls = [];

  function show(blobUrl, alt, checker) {
    return h("figure", {}, h("div", { class: checker ? "checker" : "plain" }, h("img", { src: blobUrl, alt })), h("figcaption", {}, alt));
  }

  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) {
      file.files = event.dataTransfer.files;
      announce(`Chosen: ${file.files[0].name}`);
    }
  });

  const form = h("form", { class: "card" },
    drop,
    h("div", { class: "row" },
      field("Size", size),
      field("Format", format),
      h("div", { class: "field" },
        h("label", { class: "check" }, useColour, " Fill the background with a colour"),
        field("Background colour", colour)),
    ),
    error,
    button,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const photo = file.files[0];
    if (!photo) {
      error.textContent = "Choose a photo first.";
      file.focus();
      return;
    }
    const body = new FormData();
    body.append("image_file", photo, photo.name);
    body.append("size", size.value);
    body.append("format", format.value);
    if (useColour.checked || format.value === "jpg") body.append("bg_color", colour.value);
    button.disabled = true;
    result.replaceChildren(h("p", {}, "Working…"));
    try {
      const { blob, headers } = await tryPhoto(body);
      for (const url of urls.splice(0)) URL.revokeObjectURL(url);
      original = URL.createObjectURL(photo);
      const cut = URL.createObjectURL(blob);
      urls.push(original, cut);
      const base = photo.name.replace(/\.[^.]+$/, "") || "photo";
      const name = `${base}-no-bg.${EXTENSIONS[blob.type] || "png"}`;
      const summary = `${headers.get("x-width")} × ${headers.get("x-height")} px, ${headers.get("x-credits-charged")} credits charged.`;
      result.replaceChildren(
        h("div", { class: "pair" }, show(original, "Original", false), show(cut, "Cut-out", true)),
        h("p", {}, summary, " ", h("a", { href: cut, download: name, class: "button" }, `Download ${name}`)),
      );
      announce(`Done: ${summary}`);
    } catch (failure) {
      result.replaceChildren();
      error.textContent = failure.message;
    } finally {
      button.disabled = false;
    }
  });
  main.append(
    h("h1", {}, "Try it"),
    h("p", {}, "See what the API makes of a photo before writing any code. A preview costs nothing."),
    form,
    result,
  );
}
