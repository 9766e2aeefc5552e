// The API page's samples with this server's address filled in.
import { append, h } from "../dom.js";

function samples(base) {
  return [
    ["cURL", `curl -H 'X-Api-Key: YOUR_API_KEY' \\
  -F 'image_file=@/path/to/photo.jpg' \\
  -F 'size=auto' \\
  -f ${base}/v1.0/removebg \\
  -o result.png`],
    ["Node.js", `import fs from "node:fs";

async function removeBg(blob) {
  const formData = new FormData();
  formData.append("size", "auto");
  formData.append("image_file", blob);
  const response = await fetch("${base}/v1.0/removebg", {
    method: "POST",
    headers: { "X-Api-Key": "YOUR_API_KEY" },
    body: formData,
  });
  if (response.ok) {
    return await response.arrayBuffer();
  } else {
    throw new Error(\`\${response.status}: \${response.statusText}\`);
  }
}

const fileBlob = await fs.openAsBlob("/path/to/photo.jpg");
const result = await removeBg(fileBlob);
fs.writeFileSync("result.png", Buffer.from(result));`],
    ["Python", `import requests

response = requests.post(
    "${base}/v1.0/removebg",
    files={"image_file": open("/path/to/photo.jpg", "rb")},
    data={"size": "auto"},
    headers={"X-Api-Key": "YOUR_API_KEY"},
)
if response.status_code == requests.codes.ok:
    with open("result.png", "wb") as out:
        out.write(response.content)
else:
    print("Error:", response.status_code, response.text)`],
    ["PHP", `$client = new GuzzleHttp\\Client();
$res = $client->post('${base}/v1.0/removebg', [
    'multipart' => [
        ['name' => 'image_file', 'contents' => fopen('/path/to/photo.jpg', 'r')],
        ['name' => 'size', 'contents' => 'auto']
    ],
    'headers' => ['X-Api-Key' => 'YOUR_API_KEY']
]);
$fp = fopen("result.png", "wb");
fwrite($fp, $res->getBody());
fclose($fp);`],
    ["Account (cURL)", `curl -H 'X-Api-Key: YOUR_API_KEY' \\
  ${base}/v1.0/account`],
  ];
}

export async function docsPage(main) {
  const base = window.location.origin;
  append(main, [
    h("h1", {}, "Docs"),
    h("p", {}, "This server's base URL is ", h("code", { id: "base-url" }, base),
      ". Put one of your ", h("a", { href: "/dashboard/keys" }, "API keys"), " in place of YOUR_API_KEY."),
    h("h2", {}, "Remove a background"),
    h("p", {}, "POST /v1.0/removebg with the photo as image_file (or image_url), and size, type, format, bg_color, crop and the other parameters of the API reference. The answer is the image, with X-Credits-Charged, X-Credits-Remaining, X-Width, X-Height and X-Type headers."),
    samples(base).map(([title, code]) => h("section", { "aria-label": title },
      h("h3", {}, title),
      h("pre", { tabindex: "0", "aria-label": `${title} sample` }, h("code", {}, code)),
    )),
    h("h2", {}, "Errors"),
    h("p", {}, "400 invalid parameters or image, 401 missing or invalid key, 402 not enough credits, 403 too many free previews from one IP address, 429 over the rate limit (see Retry-After), 500 internal error. Every error body is {\"errors\":[{\"title\",\"code\",\"detail\"}]}."),
  ]);
}
